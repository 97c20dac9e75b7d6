; Additions to tree-sitter-c's TAGS_QUERY (also used for C++), which has no references.

(preproc_def name: (identifier) @name value: (_)) @definition.constant

(preproc_function_def name: (identifier) @name) @definition.macro

(enumerator name: (identifier) @name) @definition.constant

(call_expression function: (identifier) @name) @reference.call

(call_expression
  function: (field_expression field: (field_identifier) @name)) @reference.call

(type_identifier) @name @reference.type

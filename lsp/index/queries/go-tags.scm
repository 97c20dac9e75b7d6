; Additions to tree-sitter-go's TAGS_QUERY, which names constants and variables without a
; definition capture.

(source_file
  (const_declaration
    (const_spec name: (identifier) @name) @definition.constant))

(source_file
  (var_declaration
    (var_spec name: (identifier) @name) @definition.variable))

(source_file
  (var_declaration
    (var_spec_list
      (var_spec name: (identifier) @name) @definition.variable)))

(type_alias name: (type_identifier) @name) @definition.type

; C++-only additions.

(namespace_definition name: (namespace_identifier) @name) @definition.module

(alias_declaration name: (type_identifier) @name) @definition.type

(call_expression
  function: (qualified_identifier name: (identifier) @name)) @reference.call

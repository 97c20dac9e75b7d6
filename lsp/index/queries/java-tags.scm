; Additions to tree-sitter-java's TAGS_QUERY.

(enum_declaration name: (identifier) @name) @definition.enum

(record_declaration name: (identifier) @name) @definition.class

(constructor_declaration name: (identifier) @name) @definition.method

((field_declaration
   (modifiers) @_mods
   declarator: (variable_declarator name: (identifier) @name)) @definition.constant
 (#match? @_mods "static")
 (#match? @_mods "final"))

(constant_declaration
  declarator: (variable_declarator name: (identifier) @name)) @definition.constant

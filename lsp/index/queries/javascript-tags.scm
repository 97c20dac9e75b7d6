; Additions to tree-sitter-javascript's TAGS_QUERY, shared by TypeScript and TSX.

(program
  (lexical_declaration
    (variable_declarator name: (identifier) @name) @definition.constant))

(program
  (variable_declaration
    (variable_declarator name: (identifier) @name) @definition.variable))

(program
  (export_statement
    declaration: (lexical_declaration
      (variable_declarator name: (identifier) @name) @definition.constant)))

(program
  (export_statement
    declaration: (variable_declaration
      (variable_declarator name: (identifier) @name) @definition.variable)))

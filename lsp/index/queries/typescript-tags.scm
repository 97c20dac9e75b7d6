; TypeScript-only additions (on top of the JavaScript tags and tree-sitter-typescript's tags.scm).

(type_alias_declaration name: (type_identifier) @name) @definition.type

(enum_declaration name: (identifier) @name) @definition.enum

(internal_module name: (_) @name) @definition.module

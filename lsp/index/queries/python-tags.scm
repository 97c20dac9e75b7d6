; Additions to tree-sitter-python's TAGS_QUERY.

(class_definition
  superclasses: (argument_list
    [(identifier) @name
     (attribute attribute: (identifier) @name)])) @reference.class

(type (identifier) @name) @reference.type

(decorator [(identifier) @name (attribute attribute: (identifier) @name)]) @reference.call

; Additions to tree-sitter-rust's TAGS_QUERY.

(const_item name: (identifier) @name) @definition.constant

(static_item name: (identifier) @name) @definition.constant

(function_signature_item name: (identifier) @name) @definition.method

; An impl block is the container of its methods.
(impl_item type: (_) @name) @scope

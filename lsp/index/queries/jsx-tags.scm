; JSX references, for JavaScript and TSX (plain TypeScript has no JSX nodes).

(jsx_opening_element name: (identifier) @name) @reference.class

(jsx_self_closing_element name: (identifier) @name) @reference.class

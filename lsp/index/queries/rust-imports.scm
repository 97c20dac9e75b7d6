(mod_item name: (identifier) @name !body) @import

(use_declaration argument: (_) @source) @import

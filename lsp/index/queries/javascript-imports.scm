(import_statement source: (string) @source) @import

(export_statement source: (string) @source) @import

((call_expression
   function: (identifier) @_require
   arguments: (arguments . (string) @source)) @import
 (#eq? @_require "require"))

(call_expression
  function: (import)
  arguments: (arguments . (string) @source)) @import

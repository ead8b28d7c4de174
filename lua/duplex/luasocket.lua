-- duplex.luasocket: LuaSocket on duplex in one line.
--
--   local socket = require "duplex.luasocket"
--
-- makes duplex.socket the `socket.core` that LuaSocket's Lua modules
-- load, then loads LuaSocket's socket.lua and returns it; socket.http,
-- socket.smtp, ltn12 and copas required after it run on duplex.
return require("duplex.socket").install()

-- copas peer: Debian's lua-copas (1.2.0) serving with a coroutine per
-- connection over socket.select, on LuaSocket; with a third argument
-- "face", the same copas on duplex.socket (LuaSocket's face: poll, no
-- 1,024-descriptor ceiling), nothing else changed. run.sh's LUA_PATH and
-- LUA_CPATH find duplex; copas and coxpcall are installed for Lua 5.1-5.3
-- only, as plain Lua that 5.4 loads too.
package.path = package.path .. ";/usr/share/lua/5.1/?.lua;/usr/share/lua/5.3/?.lua"
if arg[3] == "face" then require "duplex.luasocket" end
local socket = require "socket"
local copas = require "copas"
local common = dofile(arg[0]:gsub("[^/]*$", "") .. "common.lua")
local mode, port = common.args()
local RESP, RESP_CLOSE, wants_close = common.RESP, common.RESP_CLOSE, common.wants_close

local srv = assert(socket.bind("127.0.0.1", port, 4096))
common.announce(select(2, srv:getsockname()))

local function http(c)
  while true do
    local head, line = {}, nil
    repeat
      line = c:receive("*l")
      if not line then return end
      head[#head + 1] = line
    until line == ""
    local h = table.concat(head, "\n")
    if wants_close("\n" .. h) then c:send(RESP_CLOSE); return end
    if not c:send(RESP) then return end
  end
end

local function echo(c, raw)
  while true do
    local s, _, part = copas.receivePartial(raw, 65536)
    local data = s or (part ~= nil and part ~= "" and part)
    if not data then return end
    if not c:send(data) then return end
  end
end

copas.addserver(srv, function(raw)
  local c = copas.wrap(raw)
  if mode == "http" then http(c) else echo(c, raw) end
end)
copas.loop()

-- chat_server.lua: many clients at once in one process (duplex.run + serve, one
-- task per client): every line a client sends goes to all the other clients.
-- Run: lua5.4 examples/chat_server.lua [host] [port]; then e.g. `nc HOST PORT`

dofile(((arg and arg[0] or ""):match("^(.*)[/\\]") or ".") .. "/repo_path.lua")

local duplex = require "duplex"

local host = arg[1] or "127.0.0.1"
local port = math.tointeger(tonumber(arg[2] or 0))

local members = {}   -- client -> name, for everyone in the room

local function log(...)
  io.write(...); io.write("\n"); io.stdout:flush()
end

-- Send `text` to everyone but `from`. A write may wait (a slow reader), and
-- meanwhile other tasks may join or leave: walk a copy of the room, not the room.
local function broadcast(from, text)
  local others = {}
  for conn in pairs(members) do
    if conn ~= from then others[#others + 1] = conn end
  end
  for _, conn in ipairs(others) do
    conn:write(text)   -- a failure is that client's task's business: it will see EOF
  end
end

duplex.run(function()
  local server = assert(duplex.listen(host, port))
  local lhost, lport = server:getsockname()
  log("listening ", lhost, " ", lport)

  server:serve(function(conn)
    local phost, pport = conn:getpeername()
    local name = phost .. ":" .. pport
    local others = 0
    for _ in pairs(members) do others = others + 1 end
    -- join the room, then greet: from the greeting on, the client gets every line
    members[conn] = name
    conn:write("welcome ", name, ", ", others, " others here\n")
    broadcast(conn, "* " .. name .. " joined\n")
    log(name, " joined")

    while true do
      local line = conn:read("l")
      if not line then break end          -- end of stream, or an error: leave
      broadcast(conn, name .. ": " .. line .. "\n")
    end

    members[conn] = nil
    conn:close()
    broadcast(nil, "* " .. name .. " left\n")
    log(name, " left")
  end)
end)

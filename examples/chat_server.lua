-- chat_server.lua: many clients at once in one process (duplex.run + serve):
-- every line a client sends goes to all the other clients.
-- Run: lua5.4 examples/chat_server.lua [host] [port]; then e.g. `nc HOST PORT`
--
-- Each client has two tasks: its connection's task reads its lines, and a
-- writer task of its own sends it what is on its queue (a duplex.queue).
-- Passing a line on only puts it on the other clients' queues, which never
-- waits: a client that stops reading holds up nobody but itself.
--
-- A client whose queue is full when a line is put on it has stopped reading:
-- its socket buffers are full (some MB) and QUEUE_LINES more lines wait. It
-- is disconnected (and the others see it leave). Dropping lines instead
-- would keep it connected but with gaps it cannot know about.

dofile(((arg and arg[0] or ""):match("^(.*)[/\\]") or ".") .. "/repo_path.lua")

local duplex = require "duplex"

-- A whole number from a string, or nil (math.tointeger, on every Lua).
local function integer(s)
  local n = tonumber(s)
  return n and n % 1 == 0 and n or nil
end

local host = arg[1] or "127.0.0.1"
local port = integer(arg[2] or 0)

local QUEUE_LINES = 256          -- lines waiting for one client, at most
local MAX_LINE = 16 * 1024       -- longer lines end the connection: memory
                                 -- per client stays under QUEUE_LINES * MAX_LINE

local members = {}   -- member -> true, for everyone in the room
                     -- (member = { conn =, name =, queue =, writer = })

local function log(...)
  io.write(...); io.write("\n"); io.stdout:flush()
end

-- Put `text` on the queue of everyone but `from`. put(text, 0) never waits,
-- so the room cannot change during the loop.
local function broadcast(from, text)
  for m in pairs(members) do
    if m ~= from and not m.gone and not m.queue:put(text, 0) then
      m.gone = true                    -- its queue is full: it stopped reading
      log(m.name, " is not reading; disconnected")
      m.conn:close()                   -- its tasks see ECANCELED and end
    end
  end
end

-- The writer task of a member: its queue to its socket, in order.
local function writer(m)
  while true do
    local text = m.queue:get()
    -- gone (disconnected, or the write failed): its reader sees it too
    if m.gone or not m.conn:write(text) then break end
  end
end

duplex.run(function()
  local server = assert(duplex.listen(host, port))
  local lhost, lport = server:getsockname()
  log("listening ", lhost, " ", lport)

  server:serve(function(conn)
    conn:setoption("maxline", MAX_LINE)
    local phost, pport = conn:getpeername()
    local m = { conn = conn, name = phost .. ":" .. pport, queue = duplex.queue(QUEUE_LINES) }
    local others = 0
    for _ in pairs(members) do others = others + 1 end
    -- greet, then join the room: from the greeting on, the client gets every line
    m.queue:put("welcome " .. m.name .. ", " .. others .. " others here\n")
    m.writer = duplex.spawn(writer, m)
    members[m] = true
    broadcast(m, "* " .. m.name .. " joined\n")
    log(m.name, " joined")

    while true do
      local line = conn:read("l")
      if not line then break end          -- end of stream, an error, or disconnected
      broadcast(m, m.name .. ": " .. line .. "\n")
    end

    members[m] = nil
    m.writer:cancel()                     -- lines still queued for it are dropped
    conn:close()
    broadcast(nil, "* " .. m.name .. " left\n")
    log(m.name, " left")
  end)
end)

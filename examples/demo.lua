-- demo.lua: duplex in one process. Inside duplex.run, an echo server (serve: one
-- task per connection) and three client tasks talk over loopback, all at once.
-- Run: lua5.4 examples/demo.lua   (or `make demo`, `make demo LUA=luajit`: any
-- Lua duplex runs on); it exits 0 when all went well.

dofile(((arg and arg[0] or ""):match("^(.*)[/\\]") or ".") .. "/repo_path.lua")

local duplex = require "duplex"

local CLIENTS, LINES = 3, 3

local function say(who, fmt, ...)
  print(("%-9s %s"):format(who, fmt:format(...)))
end

duplex.run(function()
  -- the server: socket, bind, listen queue; port 0 lets the kernel choose
  local server = assert(duplex.listen("127.0.0.1", 0))
  local host, port = server:getsockname()
  say("server", "listening on %s port %d", host, port)

  -- serve() accepts until the server is closed, one task per connection
  local serving = duplex.spawn(function()
    server:serve(function(conn)
      local phost, pport = conn:getpeername()
      say("server", "accepted %s:%d", phost, pport)
      local line = conn:read("L")             -- (a loop, not conn:lines(): Lua 5.1
      while line do                            -- cannot wait inside an iterator)
        conn:write(line)                       -- echo, "\n" and all
        line = conn:read("L")
      end
      conn:close()
      say("server", "%s:%d hung up", phost, pport)
    end)
  end)

  -- the clients: each one a task, written as if its calls blocked
  local tasks = {}
  for i = 1, CLIENTS do
    tasks[i] = duplex.spawn(function()
      local me = "client " .. i
      local conn = assert(duplex.connect(host, port, { timeout = 5 }))
      conn:settimeout(5)
      for j = 1, LINES do
        local msg = ("line %d from %s"):format(j, me)
        assert(conn:write(msg, "\n"))
        say(me, "-> %s", msg)
        local echo = assert(conn:read("l"))
        say(me, "<- %s", echo)
        assert(echo == msg, "wrong echo")
      end
      conn:shutdown("w")                     -- half-close: "no more lines"
      assert(conn:read("a") == "")           -- the server closes its side too
      conn:close()
      say(me, "done")
      return LINES
    end)
  end

  local total = 0
  for i, task in ipairs(tasks) do
    local ok, n = task:join()
    assert(ok, ("client %d failed: %s"):format(i, n))
    total = total + n
  end
  server:close()   -- serve() returns, and with it the last task
  assert(serving:join())
  say("demo", "%d clients, %d lines echoed", CLIENTS, total)
end)

-- spec/helpers.lua: small shared helpers for the duplex specs.
-- Everything here uses loopback and port 0 only. Constructors raise when the
-- module fails; only track_fds's hooks assert.
-- Run specs from the repository root: `busted --lua=lua5.4 spec/NAME_spec.lua`
-- (relative paths below, such as ./build, are resolved from there).

local duplex = require "duplex"

local helpers = {}

-- Interpreter command for child Lua processes that `require "duplex"` from
-- this checkout: helpers.lua .. " script.lua". DUPLEX_CPATH (set by
-- `make asan`) selects another build. `env` execs lua5.4, so the command
-- also works after `exec` (spawn_process) and keeps the child's own pid.
local cpath = os.getenv("DUPLEX_CPATH") or "./build/?.so"
helpers.lua = string.format(
  'env LUA_PATH="./lua/?.lua;./lua/?/init.lua;;" LUA_CPATH="%s;;" lua5.4', cpath)

-- Quote s for /bin/sh.
function helpers.shquote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- A server on 127.0.0.1 with a kernel-chosen port: returns server, port.
function helpers.server(opts)
  local srv = assert(duplex.listen("127.0.0.1", 0, opts))
  local _, port = srv:getsockname()
  return srv, port
end

-- A connected pair on loopback: returns client, accepted peer, server.
-- Both ends get a 5 s timeout so a broken test fails instead of hanging;
-- a test that needs another timeout sets it itself.
function helpers.pair()
  local srv, port = helpers.server()
  local c = assert(duplex.connect("127.0.0.1", port, { timeout = 5 }))
  local p = assert(srv:accept(5))
  c:settimeout(5)
  p:settimeout(5)
  return c, p, srv
end

-- Close every argument (nil is skipped; closing twice is harmless).
function helpers.close(...)
  for i = 1, select("#", ...) do
    local o = select(i, ...)
    if o ~= nil then o:close() end
  end
end

-- Number of open descriptors of this process, after a full GC (twice, so
-- objects resurrected for __gc are collected too).
local ok_lfs, lfs = pcall(require, "lfs")
function helpers.fdcount()
  collectgarbage()
  collectgarbage()
  local n = 0
  if ok_lfs then
    for name in lfs.dir("/proc/self/fd") do
      if name ~= "." and name ~= ".." then n = n + 1 end
    end
  else
    -- `ls` must list our descriptors, not its own: name our pid.
    local f = assert(io.open("/proc/self/stat"))
    local pid = f:read("n")
    f:close()
    local p = assert(io.popen("ls /proc/" .. pid .. "/fd"))
    for _ in p:lines() do n = n + 1 end
    p:close()
  end
  return n
end

-- Call inside a describe block: every test in it must leave the number of
-- open descriptors as it found it. busted runs after_each hooks in the order
-- they were registered, so close test objects with finally (or an after_each
-- registered before this call), not in a later after_each.
function helpers.track_fds()
  local busted = require "busted"  -- its globals live in the spec's env only
  local before
  busted.before_each(function() before = helpers.fdcount() end)
  busted.after_each(function()
    busted.assert.equal(before, helpers.fdcount(), "descriptors leaked by this test")
  end)
end

-- Cleanups for the running test, run last-in first-out by
-- helpers.run_cleanups, which a describe registers as an after_each before
-- helpers.track_fds (busted keeps only the last function given to
-- `finally`, so it cannot hold several).
local cleanups = {}
function helpers.defer(fn) cleanups[#cleanups + 1] = fn end
function helpers.run_cleanups()
  local list, first_err = cleanups, nil
  cleanups = {}
  for i = #list, 1, -1 do
    local ok, err = pcall(list[i])
    if not ok and first_err == nil then first_err = err end
  end
  if first_err ~= nil then error(first_err, 0) end
end

-- helpers.pair(), closed by helpers.run_cleanups when the test ends.
function helpers.deferred_pair()
  local c, p, srv = helpers.pair()
  helpers.defer(function() helpers.close(c, p, srv) end)
  return c, p, srv
end

-- A fresh path for a Unix domain socket (the file does not exist yet; the
-- test removes it when done).
function helpers.tmpname()
  local name = os.tmpname()
  os.remove(name)
  return name .. ".sock"
end

-- Whether IPv6 loopback is usable here.
function helpers.has_ipv6()
  local srv = duplex.listen("::1", 0)
  if not srv then return false end
  srv:close()
  return true
end

local function proc_state(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s:match(".*%)%s+(%a)")
end

-- Run the shell command cmd in the background; its stdout is readable with
-- proc:read(...). cmd runs through `exec`, so proc.pid is its own pid (wrap
-- pipelines and lists in `sh -c '...'`, which is then the pid).
--   proc:wait([timeout]) -> true|nil, "exit"|"signal", code  (reaps it);
--                           nil, "timeout" if still running after timeout s
--   proc:kill([sig])     -> signals pid (default TERM) if not yet reaped
--   proc:close()         -> kill, then wait; safe to call twice (for finally)
function helpers.spawn_process(cmd)
  local pipe = assert(io.popen("echo $$; exec " .. cmd, "r"))
  local pid = assert(math.tointeger(tonumber(pipe:read("l"))), "no pid")
  local proc = { pid = pid, reaped = false }

  function proc:read(...) return pipe:read(...) end

  function proc:kill(sig)
    if not self.reaped then
      os.execute(string.format("kill -%s %d 2>/dev/null", sig or "TERM", self.pid))
    end
  end

  function proc:wait(timeout)
    if self.reaped then return table.unpack(self.status, 1, 3) end
    if timeout then
      local deadline = duplex.now() + timeout
      while true do
        local st = proc_state(self.pid)
        if st == nil or st == "Z" then break end
        if duplex.now() >= deadline then return nil, "timeout" end
        os.execute("sleep 0.02")
      end
    end
    self.status = table.pack(pipe:close())
    self.reaped = true
    return table.unpack(self.status, 1, 3)
  end

  function proc:close()
    if self.reaped then return end
    self:kill("TERM")
    if not self:wait(2) then
      self:kill("KILL")
      self:wait()
    end
  end

  return proc
end

-- The whole content of a file, or nil; and a file written whole.
function helpers.slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

function helpers.spit(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

-- A new directory /tmp/duplex-TAG.XXXXXX (the caller removes it).
function helpers.mktemp_dir(tag)
  local p = assert(io.popen("mktemp -d /tmp/duplex-" .. tag .. ".XXXXXX"))
  local d = p:read("l")
  p:close()
  assert(d and d:find("^/tmp/duplex%-"), "mktemp -d failed")
  return d
end

-- Run fn() and return its results plus the seconds it took (monotonic).
function helpers.timed(fn)
  local t0 = duplex.now()
  local r = table.pack(fn())
  return duplex.now() - t0, table.unpack(r, 1, r.n)
end

-- Inside duplex.run: give the other tasks turns (sleep(0)) until pred()
-- returns a true value, and return it; raises after `limit` seconds
-- (default 5: a hang guard, not a timing). Specs wait for a state this
-- way, never for a guessed time.
function helpers.wait_until(pred, limit, what)
  local deadline = duplex.now() + (limit or 5)
  while true do
    local v = pred()
    if v then return v end
    if duplex.now() > deadline then
      error(("wait_until: %s after %g s"):format(what or "not true", limit or 5), 2)
    end
    duplex.sleep(0)
  end
end

-- duplex.core.waiting asks the scheduler what a task waits for (a test
-- accessor, not duplex's API).
local core = require "duplex.core"

-- The id of the running task (for until_waiting from another task), or nil.
helpers.current = core.current

-- Inside duplex.run: wait_until `task` (a duplex.spawn task, or a task
-- id) is suspended, waiting for `what` when given: "read" or "write" (a
-- socket's readiness), "turn" (its place in a socket's FIFO) or "timer"
-- (sleep, join, cond, queue, a lookup); and on socket `on` when given.
-- Returns what it waits for; raises if the task ends first.
function helpers.until_waiting(task, what, on)
  local id = type(task) == "table" and task.id or task
  local fd = on and on:fileno()
  return helpers.wait_until(function()
    local w, wfd = core.waiting(id)
    if w and (what == nil or w == what) and (fd == nil or wfd == fd) then return w end
    if not core.alive(id) then error("until_waiting: the task ended first", 4) end
  end, nil, ("the task does not wait for %s"):format(what or "anything"))
end

-- Let the module create any lazily made, process-wide descriptor (the
-- scheduler's poller, made by the first duplex.run and kept) now, so the
-- first test that uses it does not count it as a leak.
pcall(function()
  local c, p, srv = helpers.pair()
  p:settimeout(0.01)
  p:read(1)
  srv:accept(0.01)
  helpers.close(c, p, srv)
  duplex.run(function() duplex.sleep(0.001) end)
end)

return helpers

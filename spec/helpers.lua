-- spec/helpers.lua: small shared helpers for the duplex specs.
-- Everything here uses loopback and port 0 only. Constructors raise when the
-- module fails; only track_fds's hooks assert.
-- Run specs from the repository root: `busted --lua=lua5.4 spec/NAME_spec.lua`
-- (relative paths below, such as ./build, are resolved from there), or
-- `make test LUA=lua5.3|lua5.1|luajit`: the specs are one source for Lua
-- 5.1, 5.3, 5.4 and LuaJIT; the helpers under "Lua versions" below hide
-- what differs.

local duplex = require "duplex"

local helpers = {}

-- Interpreter command for child Lua processes that `require "duplex"` from
-- this checkout: helpers.lua .. " script.lua". The interpreter is the one
-- under test, DUPLEX_LUA (the Makefile's LUA; default lua5.4), and
-- DUPLEX_CPATH (set by the Makefile: build/<version>/?.so, or by `make
-- asan`) selects its build. `env` execs the interpreter, so the command
-- also works after `exec` (spawn_process) and keeps the child's own pid.
local cpath = os.getenv("DUPLEX_CPATH") or "./build/?.so"
helpers.interpreter = os.getenv("DUPLEX_LUA") or "lua5.4"
helpers.cpath = cpath
helpers.lua = string.format(
  'env LUA_PATH="./lua/?.lua;./lua/?/init.lua;;" LUA_CPATH="%s;;" %s', cpath, helpers.interpreter)

-- Lua versions -------------------------------------------------------------

-- Which Lua runs the specs: 5.4 has <close>; 5.3 and 5.4 have integers
-- and the bitwise operators; PUC 5.1 (not LuaJIT) cannot yield across
-- pcall, metamethods and `for ... in` iterators.
helpers.lua54 = _VERSION == "Lua 5.4"
helpers.luajit = rawget(_G, "jit") ~= nil
helpers.puc51 = _VERSION == "Lua 5.1" and not helpers.luajit

helpers.pack = table.pack or function(...) return { n = select("#", ...), ... } end
helpers.unpack = table.unpack or unpack

-- math.type where there is one (5.3, 5.4); where every number is a double
-- (5.1, LuaJIT) a finite number without fraction counts as an integer.
local mathtype = math.type or function(v)
  if type(v) ~= "number" then return nil end
  return (v == math.floor(v) and v - v == 0) and "integer" or "float"
end
helpers.mathtype = mathtype

-- math.tointeger: v if it is an integer (an integral float too), else nil.
helpers.tointeger = math.tointeger or function(v)
  if type(v) == "number" and mathtype(v) == "integer" then return v end
  return nil
end

-- Integer arithmetic in place of the operators 5.1 and LuaJIT lack, for
-- non-negative integers below 2^53: a // b, a & b, a >> n, a << n, and
-- bit n (0: the lowest) of a hexadecimal string of any length (a /proc
-- signal mask: 64 bits, more than a double holds exactly).
function helpers.idiv(a, b) return math.floor(a / b) end
function helpers.band(a, b)
  local r, bit = 0, 1
  while a > 0 and b > 0 do
    if a % 2 == 1 and b % 2 == 1 then r = r + bit end
    a, b, bit = math.floor(a / 2), math.floor(b / 2), bit * 2
  end
  return r
end
function helpers.shr(a, n) return math.floor(a / 2 ^ n) end
function helpers.shl(a, n) return a * 2 ^ n end
function helpers.hexbit(hex, n)
  local digit = tonumber(hex:sub(-1 - math.floor(n / 4), -1 - math.floor(n / 4)), 16) or 0
  return math.floor(digit / 2 ^ (n % 4)) % 2 == 1
end

-- The generator x -> (x * 1103515245 + 12345) mod 2^31 exactly, also where
-- numbers are doubles (the product needs 61 bits): the specs' seeded bytes.
function helpers.lcg(x)
  local lo, hi = 1103515245 % 65536, math.floor(1103515245 / 65536)
  return (x * lo + (x * hi % 32768) * 65536 + 12345) % 2147483648
end

-- A big-endian unsigned integer of `width` bytes (string.pack(">I4", n))
-- and a little-endian one (string.pack("<I4", n)).
function helpers.be(n, width)
  local t = {}
  for i = width, 1, -1 do t[i] = string.char(n % 256); n = math.floor(n / 256) end
  return table.concat(t)
end
function helpers.le(n, width)
  return helpers.be(n, width):reverse()
end

-- os.execute's results as 5.2 and later give them: true|nil, "exit"|"signal",
-- code (5.1 and LuaJIT return the wait status).
function helpers.execute(cmd)
  local a, how, code = os.execute(cmd)
  if type(a) ~= "number" then return a, how, code end
  if a % 256 == 0 then
    code = math.floor(a / 256)
    return code == 0 or nil, "exit", code
  end
  return nil, "signal", a % 128
end

-- Whether io.popen's close tells how the command ended (5.2 and later).
helpers.close_status = _VERSION ~= "Lua 5.1"

-- Run the shell command cmd and read all its stdout: the text, then how it
-- ended as io.popen's close says it on 5.2 and later (true|nil,
-- "exit"|"signal", code). Where close does not tell (5.1, LuaJIT) the
-- shell's $? is read after the text (a signal N then shows as 128+N).
function helpers.readall(cmd)
  if helpers.close_status then
    local p = assert(io.popen(cmd))
    local out = p:read("*a")
    return out, p:close()
  end
  local p = assert(io.popen(("sh -c %s; printf '\\n@@status %%d' $?"):format(helpers.shquote(cmd))))
  local out = p:read("*a")
  p:close()
  local text, st = out:match("^(.*)\n@@status (%d+)$")
  st = tonumber(st)
  if not st then return out, nil, "exit", -1 end
  if st > 128 then return text, nil, "signal", st - 128 end
  return text, st == 0 or nil, "exit", st
end

-- load(text, name, "t", env) on every Lua (5.1 and LuaJIT: loadstring and
-- setfenv).
function helpers.load(text, name, env)
  if rawget(_G, "setfenv") and rawget(_G, "loadstring") then
    local f, err = loadstring(text, name)
    if f and env then setfenv(f, env) end
    return f, err
  end
  return load(text, name, "t", env)
end

-- A function compiled from src where the running Lua is 5.4, else nil:
-- the specs of what only 5.4 has (a <close> variable), which then show as
-- pending. src sees the globals of env (default: the caller's _ENV, where
-- busted's assert and friends live), not the caller's locals: pass what
-- it needs as arguments (`local duplex, helpers = ...`).
function helpers.load54(src, name, env)
  if not helpers.lua54 then return nil end
  if env == nil then
    local f = debug.getinfo(2, "f").func
    for i = 1, math.huge do
      local k, v = debug.getupvalue(f, i)
      if k == nil then break end
      if k == "_ENV" then env = v; break end
    end
  end
  return assert(load(src, "=" .. (name or "load54"), "t", env or _G))
end

-- body(...) under a to-be-closed variable whose __close calls
-- on_close(err), on Lua 5.4 (compiled by load54); elsewhere plain body(...):
-- on_close is then never called, and a spec expects what it records only
-- on 5.4 (helpers.lua54 and {...} or {}).
local with_close54 = helpers.load54([[
  local on_close, body = ...
  local guard <close> = setmetatable({}, { __close = function(_, err) on_close(err) end })
  return body(select(3, ...))
]], "with_close", _G)
function helpers.with_close(on_close, body, ...)
  if with_close54 then return with_close54(on_close, body, ...) end
  return body(...)
end

-- Objects a test closes when it ends, in place of <close> variables (5.4
-- only): `local own = helpers.scope(); finally(own.close)` (busted keeps
-- one finally per test), then own(x, ...) registers x (anything with a
-- close method, or a function to call) and returns x, ...; own.close
-- closes them last-in first-out (nil is skipped, a second close is
-- harmless).
function helpers.scope()
  local list = {}
  local scope = {}
  function scope.close()
    local first_err
    for i = #list, 1, -1 do
      local x = list[i]
      list[i] = nil
      local ok, err = pcall(function()
        if type(x) == "function" then x() else x:close() end
      end)
      if not ok and first_err == nil then first_err = err end
    end
    if first_err ~= nil then error(first_err, 0) end
  end
  return setmetatable(scope, { __call = function(_, x, ...)
    if x ~= nil then list[#list + 1] = x end
    return x, ...
  end })
end

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
    local pid = f:read("*n")
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
  local s = f:read("*a")
  f:close()
  if not s then return nil end               -- (gone between open and read)
  return s:match(".*%)%s+(%a)")
end

-- For io.popen(line) of a shell command that execs what it runs (so that
-- its pid is the command's): line, and where io.popen's close does not
-- tell how it ended (5.1, LuaJIT) a file that a shell around it writes $?
-- into (a signal N: 128+N); that shell's own stderr is /dev/null (dash
-- would say "Terminated" there). helpers.closed_status(statusfile,
-- pipe:close()) then gives 5.2's true|nil, "exit"|"signal", code.
function helpers.with_status(cmd)
  if helpers.close_status then return cmd, nil end
  local statusfile = os.tmpname()
  local inner = ("sh -c %s; echo $? >%s"):format(
    helpers.shquote("exec 2>&3 3>&-; " .. cmd), helpers.shquote(statusfile))
  return "exec sh -c " .. helpers.shquote(inner) .. " 3>&2 2>/dev/null", statusfile
end

function helpers.closed_status(statusfile, ...)
  if not statusfile then return ... end
  local st = tonumber(helpers.slurp(statusfile) or "")
  os.remove(statusfile)
  if not st then return nil, "exit", -1 end
  if st > 128 then return nil, "signal", st - 128 end
  return st == 0 or nil, "exit", st
end

-- Run the shell command cmd in the background; its stdout is readable with
-- proc:read(...). cmd runs through `exec`, so proc.pid is its own pid (wrap
-- pipelines and lists in `sh -c '...'`, which is then the pid).
--   proc:wait([timeout]) -> true|nil, "exit"|"signal", code  (reaps it);
--                           nil, "timeout" if still running after timeout s
--   proc:kill([sig])     -> signals pid (default TERM) if not yet reaped
--   proc:close()         -> kill, then wait; safe to call twice (for finally)
function helpers.spawn_process(cmd)
  local line, statusfile = helpers.with_status("echo $$; exec " .. cmd)
  local pipe = assert(io.popen(line, "r"))
  local pid = assert(helpers.tointeger(tonumber(pipe:read("*l"))), "no pid")
  local proc = { pid = pid, reaped = false }

  function proc:read(fmt, ...)
    if fmt == "L" and helpers.puc51 then    -- (5.1 has no "L": a line, "\n" put back)
      local line = pipe:read("*l")
      return line and line .. "\n"
    end
    return pipe:read(helpers.iofmt(fmt, ...))
  end

  function proc:kill(sig)
    if not self.reaped then
      os.execute(string.format("kill -%s %d 2>/dev/null", sig or "TERM", self.pid))
    end
  end

  function proc:wait(timeout)
    if self.reaped then return helpers.unpack(self.status, 1, 3) end
    if timeout then
      local deadline = duplex.now() + timeout
      while true do
        local st = proc_state(self.pid)
        if st == nil or st == "Z" then break end
        if duplex.now() >= deadline then return nil, "timeout" end
        os.execute("sleep 0.02")
      end
    end
    self.status = helpers.pack(helpers.closed_status(statusfile, pipe:close()))
    self.reaped = true
    return helpers.unpack(self.status, 1, 3)
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

-- The formats of io's read as every Lua takes them: "l" -> "*l" (5.1 wants
-- the star; the others allow it).
function helpers.iofmt(...)
  local t = helpers.pack(...)
  for i = 1, t.n do
    if type(t[i]) == "string" and t[i]:sub(1, 1) ~= "*" then t[i] = "*" .. t[i] end
  end
  return helpers.unpack(t, 1, t.n)
end

-- The whole content of a file, or nil; and a file written whole.
function helpers.slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
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
  local d = p:read("*l")
  p:close()
  assert(d and d:find("^/tmp/duplex%-"), "mktemp -d failed")
  return d
end

-- Run fn() and return its results plus the seconds it took (monotonic).
function helpers.timed(fn)
  local t0 = duplex.now()
  local r = helpers.pack(fn())
  return duplex.now() - t0, helpers.unpack(r, 1, r.n)
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

-- spec/child_helpers.lua: child Lua processes for the resolver and Happy
-- Eyeballs specs (spec/51, spec/52). They run with build/shim/fakegai.so preloaded
-- (spec/shim/fakegai.c: names under .test answer from a table, slowly for
-- NAME.slow.test, a multicast group for NAME.group.test, 127.0.0.2 for
-- NAME.lo2.test), which must never
-- be preloaded into busted itself.
--
--   local ch = require "spec.child_helpers"
--   local so, why = ch.fakegai()           -- nil, why before `make shims`
--   local res, out = ch.run(body, { FAKEGAI_SLOW = "2" }, 20)
--
-- `body` is the text of a Lua chunk; it runs after a prelude that defines
--   duplex                       the module
--   emit(v)                      hands v (nil, booleans, numbers, strings,
--                                tables of them) back to the spec as `res`
--   nthreads()                   threads of this process (/proc/self/task)
--   fdcount()                    descriptors open in this process
--   timed(fn, ...)               seconds, fn's results
--   until_waiting(task)          inside run: turns for the others until
--                                task waits (spec/helpers.lua's, bounded)
--   pack(...), unpack(t, i, j)   table.pack and table.unpack on every Lua
-- and the child ends with os.exit(0), without closing the Lua state: see
-- ch.run. A child that raises, or does not emit, fails the spec with its
-- stdout and stderr.

local helpers = require "spec.helpers"
local slurp = helpers.slurp

local ch = {}

local function sh_ok(cmd)
  return helpers.execute(cmd) == true
end


local function cwd()
  local p = assert(io.popen("pwd"))
  local d = p:read("*l")
  p:close()
  return d
end

-- The absolute path of DIR/NAME.so, the test shim spec/shim/NAME.c as
-- `make shims` builds it into DIR (DUPLEX_SHIMS, set by the Makefile:
-- build/shim for 5.4, build/<version>/shim for the others; make test, asan,
-- test-poll and memcheck build them; a spec never runs a compiler); or nil,
-- why when it is missing or older than its source.
function ch.shim(name)
  local dir = os.getenv("DUPLEX_SHIMS") or "build/shim"
  local rel, src = dir .. "/" .. name .. ".so", "spec/shim/" .. name .. ".c"
  if not sh_ok("test -f " .. helpers.shquote(rel)) then
    return nil, rel .. " is missing: `make shims` builds the test shims"
  end
  if sh_ok(("test %s -nt %s"):format(helpers.shquote(src), helpers.shquote(rel))) then
    return nil, rel .. " is older than " .. src .. ": `make shims` builds it again"
  end
  if rel:sub(1, 1) == "/" then return rel end
  return cwd() .. "/" .. rel
end

-- build/shim/fakegai.so (the LD_PRELOAD getaddrinfo of spec/shim/fakegai.c).
function ch.fakegai()
  return ch.shim("fakegai")
end

local PRELUDE = [==[
local duplex = require "duplex"
local pack = table.pack or function(...) return { n = select("#", ...), ... } end
local unpack = table.unpack or unpack
-- a number as Lua source: an integer as one; a float with 17 digits (and
-- ".0" where it has no fraction: still a float on 5.3 and 5.4)
local function num(v)
  if v ~= v then return "(0/0)" end
  if v == math.huge then return "math.huge" elseif v == -math.huge then return "-math.huge" end
  if math.type and math.type(v) == "integer" then return string.format("%d", v) end
  local s = string.format("%.17g", v)
  if math.type and not s:find("[.eE]") then s = s .. ".0" end
  return s
end
local function ser(v, out)
  local t = type(v)
  if t == "string" then out[#out + 1] = string.format("%q", v)
  elseif t == "number" then
    out[#out + 1] = num(v)
  elseif t == "boolean" or t == "nil" then out[#out + 1] = tostring(v)
  elseif t == "table" then
    out[#out + 1] = "{"
    for k, x in pairs(v) do
      out[#out + 1] = "["; ser(k, out); out[#out + 1] = "]="; ser(x, out); out[#out + 1] = ","
    end
    out[#out + 1] = "}"
  else out[#out + 1] = string.format("%q", tostring(v)) end
  return out
end
local emitted = false
local function emit(v)
  io.write("\n@@RESULT@@", table.concat(ser(v, {})), "\n")
  io.stdout:flush()
  emitted = true
end
local function count_dir(dir)
  local n = 0
  local ok, lfs = pcall(require, "lfs")
  if ok then
    for name in lfs.dir(dir) do if name ~= "." and name ~= ".." then n = n + 1 end end
    return n
  end
  local p = io.popen("ls " .. dir)
  for _ in p:lines() do n = n + 1 end
  p:close()
  return n
end
local function mypid()
  local f = io.open("/proc/self/stat")
  local pid = f:read("*n")
  f:close()
  return pid
end
local function nthreads() return count_dir("/proc/" .. mypid() .. "/task") end
-- Inside duplex.run: does the loop wait with epoll (else: the poll build)?
local function uses_epoll()
  local p = io.popen("ls -l /proc/" .. mypid() .. "/fd 2>/dev/null")
  local out = p:read("*a")
  p:close()
  return out:find("eventpoll", 1, true) ~= nil
end
local function fdcount()
  collectgarbage()
  collectgarbage()
  return count_dir("/proc/" .. mypid() .. "/fd")
end
local function timed(fn, ...)
  local t0 = duplex.now()
  local r = pack(fn(...))
  return duplex.now() - t0, unpack(r, 1, r.n)
end
local function until_waiting(task)
  local waiting, deadline = require("duplex.core").waiting, duplex.now() + 5
  while not waiting(task.id) do
    assert(duplex.now() < deadline, "until_waiting: the task does not wait")
    duplex.sleep(0)
  end
end
local function body()
]==]

local POSTLUDE = [==[
end
local ok, err = xpcall(body, debug.traceback)
io.stdout:flush()
if not ok then io.stderr:write("child error: ", tostring(err), "\n") end
if not emitted then io.stderr:write("child: nothing emitted\n") end
-- Leave without closing the state: at lua_close the interpreter unloads
-- duplex/core.so while lookup threads may still run in it (see spec/51,
-- "the process exits cleanly while a lookup thread is busy").
os.exit(ok and 0 or 1, false)
]==]

-- Run body in a child Lua (helpers.lua: the interpreter under test) with fakegai preloaded and env (a table of
-- variables) set, for at most `limit` seconds: returns the emitted value,
-- the whole stdout, stderr and the exit code. Raises (with both outputs)
-- when the child failed or emitted nothing.
function ch.run(body, env, limit, opts)
  opts = opts or {}
  local so = opts.preload or assert(ch.fakegai())
  local dir = os.tmpname()
  os.remove(dir)
  assert(helpers.execute("mkdir -p " .. helpers.shquote(dir)))
  local script = dir .. "/child.lua"
  local f = assert(io.open(script, "wb"))
  f:write(PRELUDE, body, "\n", POSTLUDE)
  f:close()
  local vars = {}
  for k, v in pairs(env or {}) do vars[#vars + 1] = k .. "=" .. helpers.shquote(v) end
  table.sort(vars)
  -- keep what is preloaded already (make asan's sanitizer runtimes) first
  local pre = os.getenv("LD_PRELOAD")
  pre = (pre and pre ~= "") and (pre .. " " .. so) or so
  local cmd = ("timeout -k 2 %d env LD_PRELOAD=%s %s %s %s 2>%s"):format(
    limit or 20, helpers.shquote(pre), table.concat(vars, " "), helpers.lua,
    helpers.shquote(script), helpers.shquote(dir .. "/err"))
  local out, _, _, code = helpers.readall(cmd)
  local err = slurp(dir .. "/err") or ""
  helpers.execute("rm -rf " .. helpers.shquote(dir))
  local text = out:match("\n@@RESULT@@([^\n]*)\n")
  local load = loadstring or load
  if opts.raw then return text and load("return " .. text)(), out, err, code end
  if code ~= 0 or not text then
    error(("child failed (exit %s)\nstdout:\n%s\nstderr:\n%s"):format(tostring(code), out, err), 2)
  end
  return load("return " .. text)(), out, err, code
end

return ch

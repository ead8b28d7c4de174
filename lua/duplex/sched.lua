-- duplex.sched: the policy half of the scheduler (csrc/lsched.c is the
-- dispatcher): task objects (join, cancel), duplex.run, error reports
-- (onerror) and signal handlers (onsignal). Returns { run, spawn, onerror,
-- onsignal, report }; init.lua makes the first four the module's, and
-- serve.lua reports through the last.

local core = require "duplex.core"
local auxlib = require "duplex.auxlib"

local spawn_raw, current, suspend, wake, alive, now =
  core.spawn, core.current, core.suspend, core.wake, core.alive, core.now
local checktype, checkself, checktimeout, argerror =
  auxlib.checktype, auxlib.checkself, auxlib.checktimeout, auxlib.argerror
local unpack = table.unpack or unpack          -- (5.1 and LuaJIT: unpack)
local pack = table.pack or function(...) return { n = select("#", ...), ... } end

local sched = { core = core }

-- Errors in tasks --------------------------------------------------------

-- traceback is nil for reports that are not a task's error (serve's).
local function default_onerror(err, traceback)
  if traceback then
    io.stderr:write("duplex: error in task: ", tostring(err), "\n", traceback, "\n")
  else
    io.stderr:write("duplex: ", tostring(err), "\n")
  end
end

local onerror = default_onerror

--- Install fn(err, traceback) for errors in tasks other than run's main
--- task; returns the previous handler. nil restores the default (stderr).
function sched.onerror(fn)
  checktype(fn, "function", 1, "onerror", true)
  local old = onerror
  onerror = fn or default_onerror
  return old
end

--- Report an error through the onerror handler (traceback: nil for one
--- that is not a task's); a failing handler is reported on stderr.
function sched.report(err, traceback)
  local ok, why = pcall(onerror, err, traceback)
  if not ok then io.stderr:write("duplex: error in onerror handler: ", tostring(why), "\n") end
end
local report = sched.report

-- Tasks ------------------------------------------------------------------

-- Unwinds a task that cancels itself; its join then says "canceled".
local CANCELED = setmetatable({}, { __tostring = function() return "canceled" end })

local Task = { __name = "duplex.task" }
Task.__index = Task

local objects = {}        -- id -> Task, for tasks that have an object
local run_state = nil     -- { main = id, result = packed } while run runs

local done

-- End every task still alive (run's main failed, or run itself did).
local function cancel_all()
  for _, id in ipairs(core.ids()) do
    if core.cancel(id) == true then done(id, false, CANCELED) end
  end
end

-- Whether a task that is still alive waits in join for t.
local function joined(t)
  for _, j in ipairs(t.joiners) do
    if alive(j) then return true end
  end
  return false
end

-- Called by core.step (and by cancel) when a task ends.
function done(id, ok, ...)
  local t = objects[id]
  objects[id] = nil
  local result
  if ok then
    result = pack(true, ...)
  else
    local err, traceback = ...
    result = { n = 2, false, err == CANCELED and "canceled" or err }
    if err ~= CANCELED and not (t and joined(t)) and not (run_state and run_state.main == id) then
      report(err, traceback)
    end
  end
  if t then
    t.result = result
    for _, j in ipairs(t.joiners) do wake(j) end
    t.joiners = nil
  end
  if run_state and run_state.main == id then
    run_state.result = result
    if not ok then cancel_all() end   -- the main function failed: nothing goes on
  end
end
-- Signals -----------------------------------------------------------------

local on_signal = {}      -- name -> fn

local function signal_arrived(name)
  local fn = on_signal[name]
  if fn then core.go(fn, name) end
end

core.sethooks(done, report, signal_arrived)

--- Run fn(name) as a task whenever signal `name` ("TERM", "INT", "HUP",
--- ...) arrives; nil stops, and puts back what was there before. Nothing
--- about signals changes until a program calls this. Returns the previous
--- function; raises for an unknown name.
function sched.onsignal(name, fn)
  checktype(name, "string", 1, "onsignal")
  checktype(fn, "function", 2, "onsignal", true)
  name = name:gsub("^SIG", "")
  local ok, msg, code = core.sigwatch(name, fn ~= nil)
  if code == "EINVAL" then argerror(1, "onsignal", string.format("unknown signal %q", name)) end
  if not ok then return nil, msg, code end
  local old = on_signal[name]
  on_signal[name] = fn
  return old or true
end

local function cancel_id(id)
  local r = core.cancel(id)
  if r == "self" then error(CANCELED, 0) end
  if r then done(id, false, CANCELED) end
end

--- Start fn(...) as a task of the running duplex.run; returns the task.
function sched.spawn(fn, ...)
  checktype(fn, "function", 1, "spawn")
  if not run_state then error("duplex.spawn: not inside duplex.run", 2) end
  local id = spawn_raw(fn, ...)
  local t = setmetatable({ id = id, joiners = {} }, Task)
  objects[id] = t
  return t
end

--- Wait for the task to end: true, results... or false, err (like pcall);
--- nil, msg, "ETIMEDOUT" when timeout seconds pass first.
function Task:join(timeout)
  checkself(self, Task, "join")
  checktimeout(timeout, 1, "join")
  if not self.result then
    local me = current()
    if not me then error("join: not inside a duplex task", 2) end
    if me == self.id then error("join: a task cannot join itself", 2) end
    local deadline = timeout and now() + timeout
    local joiners = self.joiners
    joiners[#joiners + 1] = me
    while not self.result do
      local left = deadline and math.max(0, deadline - now())
      if not suspend(left) and not self.result then
        for i = #joiners, 1, -1 do
          if joiners[i] == me then table.remove(joiners, i) end
        end
        return nil, "join: timed out", "ETIMEDOUT"
      end
    end
  end
  return unpack(self.result, 1, self.result.n)
end

--- End the task: its wait is abandoned (what the wait held released), its
--- <close> variables closed (Lua 5.4), and join returns false,
--- "canceled". Returns true.
function Task:cancel()
  checkself(self, Task, "cancel")
  if not self.result then cancel_id(self.id) end
  return true
end

function Task:__tostring()
  return string.format("duplex.task (%s)", self.result and "done" or "running")
end

--- Run fn(...) as the first task; return its results once every task has
--- ended. If fn raises, the other tasks are cancelled and the error raised.
function sched.run(fn, ...)
  checktype(fn, "function", 1, "run")
  if run_state then error("duplex.run: already running", 2) end
  core.inrun(true)        -- (in a fork child, makes the loop its own first: may raise)
  local started, main = pcall(spawn_raw, fn, ...)
  if not started then
    core.inrun(false)
    error(main, 0)
  end
  local state = { main = main }
  run_state = state
  local ok, err = pcall(function()
    while core.step() > 0 do end
  end)
  if not ok then cancel_all() end        -- a deadlock, or a failing handler
  core.inrun(false)
  run_state = nil
  if not ok then error(err, 0) end
  local r = state.result
  if not r[1] then error(r[2], 0) end
  return unpack(r, 2, r.n)
end

--- duplex.pcall(f, ...): pcall, inside which a task may wait. PUC Lua 5.1
-- cannot yield across pcall, so there f runs in a coroutine of its own
-- that the task lends itself to (core.resume_as) while it runs; its waits
-- pass through the task's own yield. Elsewhere it is pcall itself.
local resume_as, yield, status = core.resume_as, coroutine.yield, coroutine.status
local function lent_pcall(f, ...)
  if current() == nil then return pcall(f, ...) end    -- not a task: nothing waits
  local co = coroutine.create(function(...) return f(...) end)
  local r = pack(resume_as(co, ...))
  while status(co) ~= "dead" do                          -- a wait, or a bare yield
    r = pack(resume_as(co, yield(unpack(r, 2, r.n))))
  end
  return unpack(r, 1, r.n)
end
local puc51 = _VERSION == "Lua 5.1" and rawget(_G, "jit") == nil
sched.pcall = puc51 and lent_pcall or pcall

return sched

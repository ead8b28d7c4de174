-- spec/30-run_spec.lua: duplex.run and its tasks: results and errors of run,
-- spawn, sleep and now, task:join and task:cancel, error reports to
-- duplex.onerror, and waits that are refused where a task cannot yield
-- (a coroutine the task made, a table.sort comparator).
-- Loopback and port 0 only; every wait is bounded by a timeout.

local duplex = require "duplex"
local helpers = require "spec.helpers"
local pack, unpack = helpers.pack, helpers.unpack

-- A to-be-closed value that appends `name` to `log` when it is closed.
local function recorder(log, name)
  return setmetatable({}, { __close = function() log[#log + 1] = name end })
end

-- fn() under a <close> variable, a recorder(log, name), on Lua 5.4 (compiled
-- from text by helpers.load54); elsewhere plain fn(), and nothing is logged:
-- the specs expect the log only on 5.4 (closed(...) below).
local with_recorder = helpers.load54([[
  local recorder, log, name, fn = ...
  local guard <close> = recorder(log, name)
  return fn()
]], "with_recorder")
local function guarded(log, name, fn)
  if with_recorder then return with_recorder(recorder, log, name, fn) end
  return fn()
end

-- What a log of guarded() holds when its variables have closed: the names on
-- 5.4, nothing elsewhere.
local function closed_names(...)
  return helpers.lua54 and { ... } or {}
end

-- Cleanups for the running test (see helpers.defer).
local defer, run_cleanups = helpers.defer, helpers.run_cleanups

local pair = helpers.deferred_pair

-- Install fn as the onerror handler for this test; the previous handler is
-- put back when the test ends.
local function with_onerror(fn)
  local old = duplex.onerror(fn)
  defer(function() duplex.onerror(old) end)
  return old
end

-- Collects onerror reports: { {err = ..., traceback = ...}, ... }.
local function collect_errors()
  local reports = {}
  with_onerror(function(err, traceback)
    reports[#reports + 1] = { err = err, traceback = traceback }
  end)
  return reports
end

-- The error of a wait that is impossible where it was made.
local function assert_wait_refused(ok, err, what)
  assert.is_false(ok, what .. ": the call did not raise")
  assert.is_string(err, what)
  assert.is_truthy(err:find("cannot wait here", 1, true)
    or err:find("not inside a duplex task", 1, true),
    what .. ": unexpected error: " .. err)
end

describe("duplex.run", function()
  after_each(run_cleanups)
  helpers.track_fds()

  it("returns the main function's results, nils included, and passes its arguments", function()
    local r = pack(duplex.run(function(a, b, c)
      return a + b, nil, c, "end"
    end, 1, 2, "three"))
    assert.same({ n = 4, 3, nil, "three", "end" }, r)
    assert.same({ n = 0 }, pack(duplex.run(function() end)))
  end)

  it("returns only when every task has finished", function()
    local finished = {}
    local elapsed = helpers.timed(function()
      duplex.run(function()
        for i = 1, 3 do
          duplex.spawn(function()
            duplex.sleep(0.05 * i)
            finished[#finished + 1] = i
          end)
        end
        return "main done first"
      end)
    end)
    assert.same({ 1, 2, 3 }, finished)
    assert.is_true(elapsed >= 0.14, "returned early: " .. elapsed)
    assert.is_true(elapsed < 1, "took " .. elapsed)
  end)

  it("re-raises the main function's error (the same value)", function()
    local boom = { "a table error" }
    local ok, err = pcall(duplex.run, function() error(boom) end)
    assert.is_false(ok)
    assert.equal(boom, err)
    ok, err = pcall(duplex.run, function() error("main failed") end)
    assert.is_false(ok)
    assert.is_string(err)
    assert.matches("main failed", err, 1, true)
    -- and the next run works
    assert.equal("again", duplex.run(function() return "again" end))
  end)

  it("cancels the other tasks when the main function raises, closing their <close> variables", function()
    local c, p = pair()
    local closed, reached = {}, {}
    local reports = collect_errors()
    local boom = { "main failed" }
    local elapsed, ok, err = helpers.timed(function()
      return pcall(duplex.run, function()
        duplex.spawn(function()
          guarded(closed, "sleeper", function()
            duplex.sleep(10)
            reached[#reached + 1] = "sleeper"
          end)
        end)
        duplex.spawn(function()
          guarded(closed, "reader", function()
            p:read("l")
            reached[#reached + 1] = "reader"
          end)
        end)
        local stepper = duplex.spawn(function()
          guarded(closed, "stepper", function()
            duplex.sleep(0.01)
            reached[#reached + 1] = "stepper"
            duplex.sleep(10)
          end)
        end)
        helpers.wait_until(function() return reached[1] end)
        helpers.until_waiting(stepper)   -- every task is waiting now
        error(boom)
      end)
    end)
    assert.is_false(ok)
    assert.equal(boom, err)
    table.sort(closed)
    assert.same(closed_names("reader", "sleeper", "stepper"), closed)
    assert.same({ "stepper" }, reached)
    assert.is_true(elapsed < 2, "run waited for the cancelled tasks: " .. elapsed)
    assert.same({}, reports)      -- cancellation is not an error to report
    -- the cancelled read consumed nothing
    assert(c:write("kept\n"))
    assert.equal("kept", p:read("l"))
  end)

  it("raises when called inside run, and the outer run goes on", function()
    local r = pack(duplex.run(function()
      local ok, err = pcall(duplex.run, function() return "inner" end)
      return ok, err, "outer"
    end))
    assert.equal(3, r.n)
    assert.is_false(r[1])
    assert.is_string(r[2])
    assert.equal("outer", r[3])
  end)
end)

describe("duplex.spawn", function()
  after_each(run_cleanups)
  helpers.track_fds()

  it("raises 'not inside duplex.run' outside run", function()
    local ok, err = pcall(duplex.spawn, function() end)
    assert.is_false(ok)
    assert.is_string(err)
    assert.matches("not inside duplex.run", err, 1, true)
  end)

  it("passes its arguments to the task, and works from any task", function()
    local got = duplex.run(function()
      local outer = duplex.spawn(function(x, y)
        local inner = duplex.spawn(function(z) return z * 10 end, x + y)
        return select(2, inner:join(5))
      end, 2, 3)
      return select(2, outer:join(5))
    end)
    assert.equal(50, got)
  end)
end)

describe("duplex.sleep and duplex.now", function()
  after_each(run_cleanups)
  helpers.track_fds()

  it("sleep yields inside a task: two 0.1 s sleeps take about 0.1 s together", function()
    local order = {}
    local elapsed = duplex.run(function()
      local t0 = duplex.now()
      local a = duplex.spawn(function() assert(duplex.sleep(0.1)); order[#order + 1] = "a" end)
      local b = duplex.spawn(function() assert(duplex.sleep(0.1)); order[#order + 1] = "b" end)
      assert.same({ n = 1, true }, pack(a:join(5)))
      assert.same({ n = 1, true }, pack(b:join(5)))
      return duplex.now() - t0
    end)
    assert.equal(2, #order)
    assert.is_true(elapsed >= 0.09, "returned early: " .. elapsed)
    assert.is_true(elapsed < 0.5, "the sleeps did not overlap: " .. elapsed)
  end)

  -- the timer heap grows as deadlines come: 3000 of them at once, set in a
  -- scrambled order, must come due in the order of their deadlines (20
  -- deadlines 10 ms apart, 150 tasks each: far apart beside the few
  -- microseconds, under valgrind a few dozen, between a task reading the
  -- clock and sleep reading it)
  it("3000 tasks sleeping until scrambled deadlines wake in deadline order", function()
    local order, latest = {}, 0
    local t0
    duplex.run(function()
      local tasks = {}
      for i = 1, 3000 do
        local group = math.floor((i * 7919) % 3000 / 150)      -- 0 .. 19
        tasks[i] = duplex.spawn(function()
          local now = duplex.now()
          if now > latest then latest = now end
          assert(duplex.sleep(t0 + group * 0.01 - now))
          order[#order + 1] = group
        end)
      end
      t0 = duplex.now() + 1                         -- they first run after this
      for i = 1, 3000 do assert.is_true(tasks[i]:join(10)) end
    end)
    assert.is_true(latest < t0, "the tasks were not all asleep by the first deadline")
    assert.equal(3000, #order)
    for i = 2, #order do
      assert(order[i - 1] <= order[i], "woken out of order at " .. i)
    end
  end)

  it("sleep returns true inside a task", function()
    assert.same({ n = 1, true }, pack(duplex.run(function()
      return duplex.sleep(0.001)
    end)))
  end)

  it("sleep blocks outside run and returns true", function()
    local elapsed, r = helpers.timed(function() return duplex.sleep(0.05) end)
    assert.is_true(r)
    assert.is_true(elapsed >= 0.045, "returned early: " .. elapsed)
    assert.is_true(elapsed < 1, "took " .. elapsed)
    assert.is_true(duplex.sleep(0))
  end)

  it("now is a monotonic number of seconds", function()
    local prev = duplex.now()
    assert.equal("number", type(prev))
    for _ = 1, 10000 do
      local t = duplex.now()
      assert(t >= prev, "now went back")
      prev = t
    end
    duplex.sleep(0.02)
    local d = duplex.now() - prev
    assert.is_true(d >= 0.015 and d < 1, "now advanced " .. d .. " s over a 0.02 s sleep")
    assert.is_true(duplex.run(function()
      local t0 = duplex.now()
      duplex.sleep(0.02)
      return duplex.now() - t0 >= 0.015
    end))
  end)
end)

describe("task:join", function()
  after_each(run_cleanups)
  helpers.track_fds()

  it("returns true and the task's results, like pcall", function()
    local r = duplex.run(function()
      local t = duplex.spawn(function() return 1, nil, "x" end)
      return pack(t:join())
    end)
    assert.same({ n = 4, true, 1, nil, "x" }, r)
  end)

  it("returns false and the error, like pcall (the same error value)", function()
    collect_errors()
    local boom = { "boom" }
    local r1, r2 = duplex.run(function()
      local a = duplex.spawn(function() error(boom) end)
      local b = duplex.spawn(function() error("task failed") end)
      return pack(a:join(5)), pack(b:join(5))
    end)
    assert.same({ n = 2, false, boom }, r1)
    assert.equal(boom, r1[2])
    assert.equal(2, r2.n)
    assert.is_false(r2[1])
    assert.is_string(r2[2])
    assert.matches("task failed", r2[2], 1, true)
  end)

  it("can be called again, and by several tasks, with the same results", function()
    local r = duplex.run(function()
      local t = duplex.spawn(function() duplex.sleep(0.02); return "v", 2 end)
      local others = {}
      for i = 1, 3 do others[i] = duplex.spawn(function() return pack(t:join(5)) end) end
      local res = {}
      for i = 1, 3 do res[i] = select(2, others[i]:join(5)) end
      res[4] = pack(t:join())
      res[5] = pack(t:join(0))
      return res
    end)
    for i = 1, 5 do assert.same({ n = 3, true, "v", 2 }, r[i], "join " .. i) end
  end)

  it("with a timeout returns nil, 'join: timed out', 'ETIMEDOUT' and the task keeps running", function()
    local log = {}
    local r = duplex.run(function()
      local t = duplex.spawn(function()
        duplex.sleep(0.2)
        log[#log + 1] = "finished"
        return "late"
      end)
      local elapsed, a, b, c = helpers.timed(function() return t:join(0.05) end)
      local first = pack(a, b, c)
      local zero = pack(t:join(0))
      local running = #log == 0
      local final = pack(t:join(5))
      return { first = first, elapsed = elapsed, zero = zero, running = running, final = final }
    end)
    assert.same({ n = 3, nil, "join: timed out", "ETIMEDOUT" }, r.first)
    assert.same({ n = 3, nil, "join: timed out", "ETIMEDOUT" }, r.zero)
    assert.is_true(r.elapsed >= 0.045 and r.elapsed < 1, "join(0.05) took " .. r.elapsed)
    assert.is_true(r.running, "the task ended when join timed out")
    assert.same({ n = 2, true, "late" }, r.final)
    assert.same({ "finished" }, log)
  end)
end)

describe("task:cancel", function()
  after_each(run_cleanups)
  helpers.track_fds()

  it("ends a task blocked in a read: <close> variables closed, join -> false, 'canceled'", function()
    local c, p = pair()
    local closed, reached = {}, {}
    local reports = collect_errors()
    local r = duplex.run(function()
      local t = duplex.spawn(function()
        guarded(closed, "reader", function()
          local line = p:read("l")
          reached[#reached + 1] = line
        end)
      end)
      helpers.until_waiting(t, "read") -- the task waits in read now
      local closed_before = #closed
      local cancel = pack(t:cancel())
      local closed_after = #closed
      local elapsed, a, b = helpers.timed(function() return t:join(5) end)
      local again = pack(t:cancel())
      -- the abandoned read left the socket usable, and consumed nothing
      assert(c:write("after\n"))
      local line = pack(p:read("l"))
      return { cancel = cancel, before = closed_before, after = closed_after,
               join = pack(a, b), elapsed = elapsed, again = again, line = line }
    end)
    assert.same({ n = 1, true }, r.cancel)
    assert.equal(0, r.before)
    assert.equal(#closed_names("reader"), r.after, "<close> variables not closed by cancel")
    assert.same(closed_names("reader"), closed)
    assert.same({}, reached)
    assert.same({ n = 2, false, "canceled" }, r.join)
    assert.is_true(r.elapsed < 0.5, "join after cancel took " .. r.elapsed)
    assert.same({ n = 1, true }, r.again)
    assert.same({ n = 1, "after" }, r.line)
    assert.same({}, reports)
  end)

  it("ends a sleeping task at once (run does not wait for the sleep)", function()
    local closed = {}
    local elapsed, r = helpers.timed(function()
      return duplex.run(function()
        local t = duplex.spawn(function()
          guarded(closed, "sleeper", function() duplex.sleep(10) end)
        end)
        helpers.until_waiting(t, "timer")
        t:cancel()
        return pack(t:join(1))
      end)
    end)
    assert.same({ n = 2, false, "canceled" }, r)
    assert.same(closed_names("sleeper"), closed)
    assert.is_true(elapsed < 1, "run took " .. elapsed)
  end)

  it("ends a task that has not started yet", function()
    local started = false
    local r = duplex.run(function()
      local t = duplex.spawn(function() started = true end)
      assert.is_true(t:cancel())
      return pack(t:join(1))
    end)
    assert.same({ n = 2, false, "canceled" }, r)
    assert.is_false(started)
  end)

  it("returns true for a task that has already finished, and join keeps its results", function()
    local r = duplex.run(function()
      local t = duplex.spawn(function() return "done" end)
      local first = pack(t:join(1))
      local cancel = pack(t:cancel())
      return { first, cancel, pack(t:join(1)) }
    end)
    assert.same({ { n = 2, true, "done" }, { n = 1, true }, { n = 2, true, "done" } }, r)
  end)

  it("lets a task cancel itself: nothing after cancel runs, its <close> variables are closed", function()
    local closed, reached = {}, {}
    local reports = collect_errors()
    local r = duplex.run(function()
      local t
      t = duplex.spawn(function()
        guarded(closed, "self", function()
          duplex.sleep(0.01)
          t:cancel()
          reached[#reached + 1] = "after cancel"
        end)
      end)
      return pack(t:join(5))
    end)
    assert.same({ n = 2, false, "canceled" }, r)
    assert.same(closed_names("self"), closed)
    assert.same({}, reached)
    assert.same({}, reports)
  end)
end)

describe("errors in tasks", function()
  after_each(run_cleanups)
  helpers.track_fds()

  it("go to the onerror handler with a traceback, and the other tasks go on", function()
    local reports = collect_errors()
    local log = {}
    local r = duplex.run(function()
      duplex.spawn(function()
        duplex.sleep(0.01)
        error("task blew up")
      end)
      local other = duplex.spawn(function()
        duplex.sleep(0.05)
        log[#log + 1] = "other finished"
        return "ok"
      end)
      local res = pack(other:join(5))
      log[#log + 1] = "main finished"
      return res
    end)
    assert.same({ n = 2, true, "ok" }, r)
    assert.same({ "other finished", "main finished" }, log)
    assert.equal(1, #reports)
    assert.is_string(reports[1].err)
    assert.matches("task blew up", reports[1].err, 1, true)
    assert.is_string(reports[1].traceback)
    assert.matches("traceback", reports[1].traceback, 1, true)
  end)

  it("keep their error value (a table reaches the handler as is)", function()
    local reports = collect_errors()
    local boom = { "table error" }
    duplex.run(function()
      duplex.spawn(function() error(boom) end)
    end)
    assert.equal(1, #reports)
    assert.equal(boom, reports[1].err)
    assert.is_string(reports[1].traceback)
  end)

  it("onerror returns the previous handler; onerror(nil) restores the default", function()
    local mine = function() end
    local old = with_onerror(mine)
    assert.equal("function", type(old))
    assert.equal(mine, duplex.onerror(nil))
    local default = duplex.onerror(nil)
    assert.equal("function", type(default))
    assert.not_equal(mine, default)
    assert.equal(default, duplex.onerror(old))
  end)

  it("are printed to stderr with a traceback by the default handler (after onerror(nil))", function()
    local script = [[
      local duplex = require "duplex"
      local called = false
      duplex.onerror(function() called = true end)
      duplex.onerror(nil)
      local r = duplex.run(function()
        duplex.spawn(function() error("marker-7f3a") end)
        duplex.sleep(0.02)
        return "run ok"
      end)
      io.stdout:write(r, " ", called and "custom called" or "custom not called", "\n")
    ]]
    local out, ok, how, code = helpers.readall(helpers.lua .. " -e " .. helpers.shquote(script) .. " 2>&1")
    assert.same({ true, "exit", 0 }, { ok, how, code }, out)
    assert.matches("marker-7f3a", out, 1, true)
    assert.matches("stack traceback", out, 1, true)
    assert.matches("run ok custom not called", out, 1, true)
  end)
end)

describe("waiting where a task cannot yield", function()
  after_each(run_cleanups)
  helpers.track_fds()

  it("raises in a coroutine the task created (read, accept, sleep, join), never hangs", function()
    local c, p, srv = pair()
    local elapsed, r = helpers.timed(function()
      return duplex.run(function()
        local t = duplex.spawn(function() duplex.sleep(0.3) end)
        local results = {}
        local calls = {
          read = function() return p:read("l") end,
          accept = function() return srv:accept(2) end,
          sleep = function() return duplex.sleep(0.5) end,
          join = function() return t:join(2) end,
        }
        for name, fn in pairs(calls) do
          results[name] = pack(pcall(coroutine.wrap(fn)))
        end
        -- afterwards the task itself still waits normally
        assert(c:write("then\n"))
        results.after = pack(p:read("l"))
        t:cancel()
        return results
      end)
    end)
    for _, name in ipairs { "read", "accept", "sleep", "join" } do
      assert_wait_refused(r[name][1], r[name][2], name)
    end
    assert.same({ n = 1, "then" }, r.after)
    assert.is_true(elapsed < 1, "took " .. elapsed)
  end)

  it("raises inside a table.sort comparator (read, accept, sleep), never hangs or crashes", function()
    local c, p, srv = pair()
    local elapsed, r = helpers.timed(function()
      return duplex.run(function()
        local results = {}
        local calls = {
          read = function() return p:read("l") end,
          accept = function() return srv:accept(2) end,
          sleep = function() return duplex.sleep(0.5) end,
        }
        for name, fn in pairs(calls) do
          results[name] = pack(pcall(table.sort, { 3, 1, 2 }, function(a, b)
            fn()
            return a < b
          end))
        end
        assert(c:write("then\n"))
        results.after = pack(p:read("l"))
        return results
      end)
    end)
    for _, name in ipairs { "read", "accept", "sleep" } do
      assert_wait_refused(r[name][1], r[name][2], name)
    end
    assert.same({ n = 1, "then" }, r.after)
    assert.is_true(elapsed < 1, "took " .. elapsed)
  end)

  it("raises inside a string.gsub callback, and the task goes on", function()
    local c, p = pair()
    local r = duplex.run(function()
      local res = pack(pcall(string.gsub, "x", "x", function() return p:read("l") end))
      assert(c:write("then\n"))
      res.after = pack(p:read("l"))
      return res
    end)
    assert_wait_refused(r[1], r[2], "gsub")
    assert.same({ n = 1, "then" }, r.after)
  end)

  -- (PUC 5.1 cannot: #yields_in_pcall)
  it("does not include pcall and xpcall: a task waits through them #yields_in_pcall", function()
    local c, p = pair()
    local r = duplex.run(function()
      local a = duplex.spawn(function() return pcall(p.read, p, "l") end)
      local b = duplex.spawn(function() return xpcall(p.read, debug.traceback, p, "l") end)
      helpers.until_waiting(a, "read")  -- both wait now
      helpers.until_waiting(b, "turn")
      assert(c:write("one\ntwo\n"))
      return { pack(a:join(5)), pack(b:join(5)) }
    end)
    assert.same({ { n = 3, true, true, "one" }, { n = 3, true, true, "two" } }, r)
  end)

  it("still allows calls with timeout 0 in a task's coroutine and in a comparator", function()
    local c, p, srv = pair()
    local r = duplex.run(function()
      assert(c:write("one\ntwo\nthree\n"))
      assert.equal("one", p:read("l"))    -- the rest is buffered now
      p:settimeout(0)
      local res = {}
      local co = coroutine.wrap(function()
        res.co_line = pack(p:read("l"))
        res.co_accept = pack(srv:accept(0))
        res.co_write = pack(c:write("x"))
        coroutine.yield()
        res.co_again = pack(p:read(1))
      end)
      co()
      co()
      local words = { "b", "c", "a" }
      local lines = {}
      table.sort(words, function(a, b)
        lines[#lines + 1] = pack(p:read("l"))
        return a < b
      end)
      res.words = words
      res.sort_first = lines[1]
      res.sort_last = lines[#lines]
      res.sort_count = #lines
      return res
    end)
    assert.same({ n = 1, "two" }, r.co_line)
    assert.equal(3, r.co_accept.n)
    assert.is_nil(r.co_accept[1])
    assert.is_string(r.co_accept[2])
    assert.equal("EAGAIN", r.co_accept[3])
    assert.same({ n = 1, c }, r.co_write)
    assert.same({ n = 1, "t" }, r.co_again)  -- "three" was buffered, 1 byte read
    assert.same({ "a", "b", "c" }, r.words)
    assert.same({ n = 1, "hree" }, r.sort_first)
    assert.is_true(r.sort_count >= 2)
    local last = r.sort_last
    assert.equal(3, last.n)
    assert.is_nil(last[1])
    assert.is_string(last[2])
    assert.equal("EAGAIN", last[3])
  end)
end)

describe("a bare coroutine.yield() in a task", function()
  after_each(run_cleanups)
  helpers.track_fds()

  it("just lets the other tasks run", function()
    local log = {}
    local r = duplex.run(function()
      local function worker(name)
        for i = 1, 3 do
          log[#log + 1] = name .. i
          coroutine.yield("ignored", i)
        end
        return name .. " done"
      end
      local a = duplex.spawn(worker, "a")
      local b = duplex.spawn(worker, "b")
      return { pack(a:join(5)), pack(b:join(5)) }
    end)
    assert.same({ { n = 2, true, "a done" }, { n = 2, true, "b done" } }, r)
    assert.equal(6, #log)
    local pos = {}
    for i, v in ipairs(log) do pos[v] = i end
    -- each yield let the other task run before the next step
    assert.is_true(pos.b1 < pos.a2, table.concat(log, " "))
    assert.is_true(pos.a2 < pos.b3, table.concat(log, " "))
    assert.is_true(pos.a1 < pos.b2, table.concat(log, " "))
  end)

  it("in the main task also lets others run, and run still returns", function()
    local log = {}
    duplex.run(function()
      duplex.spawn(function() log[#log + 1] = "spawned" end)
      for _ = 1, 3 do coroutine.yield() end
      log[#log + 1] = "main"
    end)
    assert.same({ "spawned", "main" }, log)
  end)
end)

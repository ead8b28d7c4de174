-- spec/42-sync_spec.lua: duplex.cond and duplex.queue (issue 7), tasks that
-- coordinate without sockets. cond: signal wakes the longest waiter, broadcast
-- wakes all and counts them, a wait times out with nil, msg, "ETIMEDOUT", a
-- signal nobody waits for is not remembered, waiters that are gone are
-- skipped. queue(n): a bounded FIFO whose put waits while full and get while
-- empty, with the same timeouts ("EAGAIN" for timeout 0), and 10,000 values
-- through several producers and consumers with none lost or duplicated.
-- Waits that time out or are cancelled leave nothing behind (issue 16).
-- Waiting outside a task raises. Every loop is bounded in count and time.

local duplex = require "duplex"
local helpers = require "spec.helpers"

-- Yield (sleep(0): the others get a turn) until pred() holds; raises after
-- `limit` seconds so that a broken test fails instead of hanging.
local function until_(pred, limit, what)
  local deadline = duplex.now() + (limit or 5)
  for _ = 1, 1e6 do
    if pred() then return end
    if duplex.now() > deadline then break end
    duplex.sleep(0)
  end
  error("timed out waiting for " .. (what or "a condition"), 2)
end

local function pack(...) return { n = select("#", ...), ... } end
local unpack = helpers.unpack

-- A queue's count: q:len() on every version, and #q the same where # takes
-- a table's __len (Lua 5.2 and later; a spec of its own is pending on 5.1
-- and LuaJIT).
local LEN_WORKS = #setmetatable({}, { __len = function() return 1 end }) == 1
local function qlen(q)
  local n = q:len()
  if LEN_WORKS then assert.equal(n, #q) end
  return n
end

-- pcall(fn) must fail with a message that contains `text` (plain).
local function raises(text, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error containing: " .. text)
  assert.is_truthy(tostring(err):find(text, 1, true),
    ("error %q does not contain %q"):format(tostring(err), text))
end

describe("duplex.cond", function()
  it("is a cond: tostring, and signal/broadcast with nobody waiting wake nobody", function()
    local c = duplex.cond()
    assert.equal("duplex.cond", tostring(c))
    assert.is_false(c:signal())
    assert.equal(0, c:broadcast())
  end)

  it("signal wakes the task that has waited longest, one per signal", function()
    duplex.run(function()
      local c = duplex.cond()
      local woken, waiting = {}, {}
      -- three tasks, started A B C, made to begin waiting in the order B C A
      local gates, tasks = {}, {}
      for _, name in ipairs { "A", "B", "C" } do
        gates[name] = duplex.cond()
        tasks[name] = duplex.spawn(function()
          assert(gates[name]:wait(5))
          waiting[#waiting + 1] = name
          local r = pack(c:wait(5))
          woken[#woken + 1] = name
          return unpack(r, 1, r.n)
        end)
      end
      until_(function() return #waiting == 0 end)
      for _, name in ipairs { "B", "C", "A" } do
        duplex.sleep(0)                     -- the tasks wait on their gates first
        until_(function() return gates[name]:signal() end, 5, "gate " .. name)
        until_(function() return waiting[#waiting] == name end, 5, name .. " waiting")
      end
      assert.same({ "B", "C", "A" }, waiting)

      for i, name in ipairs { "B", "C", "A" } do
        assert.is_true(c:signal())
        until_(function() return #woken == i end, 5, "wake " .. i)
        assert.equal(name, woken[i])
      end
      assert.same({ "B", "C", "A" }, woken)
      for _, name in ipairs { "A", "B", "C" } do
        assert.same({ true, true }, { tasks[name]:join(5) })
      end
      assert.is_false(c:signal())           -- nobody left
    end)
  end)

  it("broadcast wakes every waiting task and returns how many", function()
    duplex.run(function()
      local c = duplex.cond()
      local results, waiting = {}, 0
      local tasks = {}
      for i = 1, 5 do
        tasks[i] = duplex.spawn(function()
          waiting = waiting + 1
          results[i] = pack(c:wait(5))
        end)
      end
      until_(function() return waiting == 5 end)
      assert.equal(5, c:broadcast())
      assert.equal(0, c:broadcast())        -- they are no longer waiting
      for i = 1, 5 do assert.same({ true }, { tasks[i]:join(5) }) end
      for i = 1, 5 do assert.same({ n = 1, true }, results[i]) end

      -- a task that begins waiting after a broadcast is not woken by it
      local t0 = duplex.now()
      assert.same({ nil, "cond:wait: timed out", "ETIMEDOUT" }, { c:wait(0.05) })
      assert.is_true(duplex.now() - t0 >= 0.04)
    end)
  end)

  it("wait(timeout) returns nil, msg, \"ETIMEDOUT\" when nobody signals", function()
    duplex.run(function()
      local c = duplex.cond()
      local t0 = duplex.now()
      local r = pack(c:wait(0.1))
      local took = duplex.now() - t0
      assert.same({ n = 3, nil, "cond:wait: timed out", "ETIMEDOUT" }, r)
      assert.is_true(took >= 0.09, "returned after " .. took .. " s")
      assert.is_true(took < 5, "returned after " .. took .. " s")
      -- timeout 0: at once
      assert.same({ n = 3, nil, "cond:wait: timed out", "ETIMEDOUT" }, pack(c:wait(0)))
      -- a signal before the timeout: true, early
      duplex.spawn(function() duplex.sleep(0.02); c:signal() end)
      t0 = duplex.now()
      assert.same({ n = 1, true }, pack(c:wait(10)))
      assert.is_true(duplex.now() - t0 < 5)
    end)
  end)

  it("a signal while nobody waits is not remembered", function()
    duplex.run(function()
      local c = duplex.cond()
      assert.is_false(c:signal())
      assert.equal(0, c:broadcast())
      assert.same({ nil, "cond:wait: timed out", "ETIMEDOUT" }, { c:wait(0.05) })
    end)
  end)

  it("signal skips a waiter whose task was cancelled, and one that timed out", function()
    duplex.run(function()
      local c = duplex.cond()
      local waiting = 0
      local gone = duplex.spawn(function() waiting = waiting + 1; return c:wait() end)
      local late = duplex.spawn(function() waiting = waiting + 1; return c:wait(0.01) end)
      local woken = false
      local b = duplex.spawn(function()
        waiting = waiting + 1
        local r = pack(c:wait(5))
        woken = true
        return unpack(r, 1, r.n)
      end)
      until_(function() return waiting == 3 end)
      assert.is_true(gone:cancel())
      assert.same({ true, nil, "cond:wait: timed out", "ETIMEDOUT" }, { late:join(5) })
      assert.is_false(woken)
      assert.is_true(c:signal())            -- it woke b, not the two gone before it
      assert.same({ true, true }, { b:join(5) })
      assert.same({ false, "canceled" }, { gone:join(5) })
      assert.is_false(c:signal())
      assert.equal(0, c:broadcast())
    end)
  end)

  it("a cancelled waiter does not count in broadcast", function()
    duplex.run(function()
      local c = duplex.cond()
      local waiting = 0
      local tasks = {}
      for i = 1, 4 do
        tasks[i] = duplex.spawn(function() waiting = waiting + 1; return c:wait(5) end)
      end
      until_(function() return waiting == 4 end)
      tasks[2]:cancel()
      assert.equal(3, c:broadcast())
      for _, i in ipairs { 1, 3, 4 } do assert.same({ true, true }, { tasks[i]:join(5) }) end
    end)
  end)

  it("a run whose tasks all wait on conds with no timeout is a deadlock, not a hang", function()
    local ok, err = pcall(duplex.run, function()
      local c = duplex.cond()
      duplex.spawn(function() c:wait() end)
      c:wait()
    end)
    assert.is_false(ok)
    assert.matches("duplex.run: deadlock: every task waits for another task", err, 1, true)
  end)

  it("raises for bad arguments", function()
    local c, q = duplex.cond(), duplex.queue(1)
    raises("bad argument #1 to 'wait' (duplex.cond expected, got table)", c.wait, {})
    raises("bad argument #1 to 'signal' (duplex.cond expected, got duplex.queue)", c.signal, q)
    raises("bad argument #1 to 'broadcast' (duplex.cond expected, got nil)", c.broadcast)
    duplex.run(function()
      -- the timeout is the first argument after self; the message names it so
      raises("to 'wait' (timeout must be a non-negative number)", c.wait, c, -1)
      raises("to 'wait' (timeout must be a non-negative number)", c.wait, c, 0 / 0)
      raises("to 'wait' (number expected, got string)", c.wait, c, "1")
    end)
  end)

  it("wait outside a task raises \"not inside a duplex task\"", function()
    local c = duplex.cond()
    raises("cond:wait: not inside a duplex task", c.wait, c)
    raises("cond:wait: not inside a duplex task", c.wait, c, 1)
  end)
end)

describe("duplex.queue", function()
  it("#q is its count (# with a table's __len)", function()
    if not LEN_WORKS then pending("Lua 5.2 and later: # on 5.1 and LuaJIT takes no __len from a table") end
    local q = duplex.queue(3)
    assert.equal(0, #q)
    assert(q:put("a"))
    assert(q:put("b"))
    assert.equal(2, #q)
  end)

  it("is a FIFO; #q counts its values; tostring shows count and capacity", function()
    local q = duplex.queue(5)
    assert.equal(0, qlen(q))
    assert.equal("duplex.queue (0 of 5)", tostring(q))
    -- put and get that need not wait work outside tasks too
    for i = 1, 5 do assert.is_true(q:put(i * 10)) end
    assert.equal(5, qlen(q))
    assert.equal("duplex.queue (5 of 5)", tostring(q))
    for i = 1, 5 do
      assert.equal(i * 10, q:get())
      assert.equal(5 - i, qlen(q))
    end
    -- any value but nil, false included; put and get interleaved keep order
    assert.is_true(q:put(false))
    assert.is_true(q:put("two"))
    assert.is_false(q:get())
    assert.is_true(q:put(3))
    local t = {}
    assert.is_true(q:put(t))
    assert.equal("two", q:get())
    assert.equal(3, q:get())
    assert.equal(t, q:get())
    assert.equal(0, qlen(q))
  end)

  it("timeout 0: put on a full queue and get on an empty one return nil, msg, \"EAGAIN\" at once", function()
    local q = duplex.queue(1)
    assert.same({ n = 3, nil, "queue:get: empty", "EAGAIN" }, pack(q:get(0)))
    assert.same({ n = 1, true }, pack(q:put("a", 0)))
    assert.same({ n = 3, nil, "queue:put: full", "EAGAIN" }, pack(q:put("b", 0)))
    assert.equal(1, qlen(q))
    assert.same({ n = 1, "a" }, pack(q:get(0)))
    assert.equal(0, qlen(q))
  end)

  it("put waits while the queue is full, until a get makes room", function()
    duplex.run(function()
      local q = duplex.queue(2)
      assert(q:put(1)); assert(q:put(2))
      local log = {}
      local producer = duplex.spawn(function()
        log[#log + 1] = "put 3"
        local ok = q:put(3)
        log[#log + 1] = "put 3 done"
        return ok
      end)
      until_(function() return log[1] == "put 3" end)
      helpers.until_waiting(producer, "timer")   -- it is stuck, waiting in put
      assert.same({ "put 3" }, log)
      assert.equal(2, qlen(q))
      assert.equal(1, q:get())
      assert.same({ true, true }, { producer:join(5) })
      assert.same({ "put 3", "put 3 done" }, log)
      assert.equal(2, qlen(q))
      assert.equal(2, q:get())
      assert.equal(3, q:get())
    end)
  end)

  it("get waits while the queue is empty, until a put", function()
    duplex.run(function()
      local q = duplex.queue(3)
      local log = {}
      local consumer = duplex.spawn(function()
        log[#log + 1] = "get"
        local v = q:get()
        log[#log + 1] = "got " .. tostring(v)
        return v
      end)
      until_(function() return log[1] == "get" end)
      helpers.until_waiting(consumer, "timer")
      assert.same({ "get" }, log)
      assert.is_true(q:put("hello"))
      assert.same({ true, "hello" }, { consumer:join(5) })
      assert.same({ "get", "got hello" }, log)
      assert.equal(0, qlen(q))
      -- get with a timeout gets a value put before the timeout
      duplex.spawn(function() duplex.sleep(0.02); q:put("later") end)
      assert.equal("later", q:get(10))
    end)
  end)

  it("waiting puts and gets are served first come, first served", function()
    duplex.run(function()
      local q = duplex.queue(1)
      assert(q:put("first"))
      local waiting = 0
      local p = {}
      for i, v in ipairs { "a", "b", "c" } do
        p[i] = duplex.spawn(function() waiting = waiting + 1; return q:put(v, 5) end)
        until_(function() return waiting == i end)   -- each begins waiting in turn
        duplex.sleep(0)
      end
      local got = {}
      for _ = 1, 4 do got[#got + 1] = q:get(5) end
      assert.same({ "first", "a", "b", "c" }, got)
      for i = 1, 3 do assert.same({ true, true }, { p[i]:join(5) }) end

      -- and consumers: the first to wait gets the first value
      local results, c = {}, {}
      waiting = 0
      for i = 1, 3 do
        c[i] = duplex.spawn(function() waiting = waiting + 1; results[i] = q:get(5) end)
        until_(function() return waiting == i end)
        duplex.sleep(0)
      end
      for _, v in ipairs { "x", "y", "z" } do assert(q:put(v, 5)) end
      for i = 1, 3 do c[i]:join(5) end
      assert.same({ "x", "y", "z" }, results)
    end)
  end)

  it("put and get time out with nil, msg, \"ETIMEDOUT\"; a put that timed out adds nothing", function()
    duplex.run(function()
      local q = duplex.queue(1)
      local t0 = duplex.now()
      assert.same({ n = 3, nil, "queue:get: timed out", "ETIMEDOUT" }, pack(q:get(0.05)))
      assert.is_true(duplex.now() - t0 >= 0.04)
      assert(q:put("kept"))
      t0 = duplex.now()
      assert.same({ n = 3, nil, "queue:put: timed out", "ETIMEDOUT" }, pack(q:put("lost", 0.05)))
      assert.is_true(duplex.now() - t0 >= 0.04)
      assert.equal(1, qlen(q))
      assert.equal("kept", q:get(0))
      assert.same({ nil, "queue:get: empty", "EAGAIN" }, { q:get(0) })
      -- a getter that timed out does not swallow a later value
      local gone = duplex.spawn(function() return q:get(0.01) end)
      assert.same({ true, nil, "queue:get: timed out", "ETIMEDOUT" }, { gone:join(5) })
      assert(q:put("next"))
      assert.equal("next", q:get(1))
    end)
  end)

  it("put(nil) and bad timeouts raise; so do bad capacities", function()
    local q = duplex.queue(2)
    raises("bad argument #1 to 'put' (value expected)", q.put, q, nil)
    raises("bad argument #1 to 'put' (value expected)", q.put, q)
    assert.equal(0, qlen(q))
    raises("bad argument #2 to 'put' (timeout must be a non-negative number)", q.put, q, 1, -1)
    raises("bad argument #2 to 'put' (number expected, got string)", q.put, q, 1, "x")
    raises("bad argument #1 to 'get' (timeout must be a non-negative number)", q.get, q, -0.5)
    raises("bad argument #1 to 'get' (number expected, got table)", q.get, q, {})
    raises("bad argument #1 to 'put' (duplex.queue expected, got duplex.cond)", q.put, duplex.cond(), 1)
    raises("bad argument #1 to 'get' (duplex.queue expected, got nil)", q.get)
    assert.equal(0, qlen(q))
    for _, n in ipairs { 0, -1, 1.5, "3", math.huge } do
      raises("bad argument #1 to 'queue' (capacity must be a positive integer)", duplex.queue, n)
    end
    raises("bad argument #1 to 'queue' (capacity must be a positive integer)", duplex.queue)
  end)

  it("waits outside a task raise \"not inside a duplex task\"", function()
    local q = duplex.queue(1)
    raises("queue:get: not inside a duplex task", q.get, q)
    raises("queue:get: not inside a duplex task", q.get, q, 1)
    assert(q:put(1))
    raises("queue:put: not inside a duplex task", q.put, q, 2)
    raises("queue:put: not inside a duplex task", q.put, q, 2, 1)
    assert.equal(1, qlen(q))
    assert.equal(1, q:get())
  end)

  it("moves 10,000 values through 4 producers and 3 consumers, none lost or duplicated", function()
    local PRODUCERS, CONSUMERS, EACH = 4, 3, 2500
    local STOP = {}
    local seen, per_consumer = {}, {}
    local t0 = duplex.now()
    duplex.run(function()
      local q = duplex.queue(7)
      local x = 12345                      -- a fixed pseudo-random sequence of turns
      local function maybe_yield()
        x = (x * 1103515245 + 12345) % 2147483648
        if x % 5 == 0 then duplex.sleep(0) end
      end
      local producers, consumers = {}, {}
      for p = 1, PRODUCERS do
        producers[p] = duplex.spawn(function()
          for i = 1, EACH do
            assert(q:put(p * 100000 + i, 10))
            maybe_yield()
          end
        end)
      end
      for c = 1, CONSUMERS do
        per_consumer[c] = {}
        consumers[c] = duplex.spawn(function()
          for _ = 1, PRODUCERS * EACH + 1 do
            local v = assert(q:get(10))
            if v == STOP then return end
            local mine = per_consumer[c]
            mine[#mine + 1] = v
            seen[v] = (seen[v] or 0) + 1
            maybe_yield()
          end
          error("no STOP")
        end)
      end
      for p = 1, PRODUCERS do assert.same({ true }, { producers[p]:join(20) }) end
      for _ = 1, CONSUMERS do assert(q:put(STOP, 10)) end
      for c = 1, CONSUMERS do assert.same({ true }, { consumers[c]:join(20) }) end
      assert.equal(0, qlen(q))
    end)
    assert.is_true(duplex.now() - t0 < 25)

    local total = 0
    for p = 1, PRODUCERS do
      for i = 1, EACH do
        local v = p * 100000 + i
        assert(seen[v] == 1, ("value %d seen %s times"):format(v, tostring(seen[v])))
        total = total + 1
      end
    end
    local count = 0
    for _ in pairs(seen) do count = count + 1 end
    assert.equal(PRODUCERS * EACH, count)
    assert.equal(PRODUCERS * EACH, total)
    -- FIFO: each consumer got each producer's values in the order put
    local busy = 0
    for c = 1, CONSUMERS do
      local last = {}
      for _, v in ipairs(per_consumer[c]) do
        local p, i = math.floor(v / 100000), v % 100000
        assert(i > (last[p] or 0), ("consumer %d got %d after %d"):format(c, v, last[p] or 0))
        last[p] = i
      end
      if #per_consumer[c] > 0 then busy = busy + 1 end
    end
    assert.is_true(busy >= 2, "the values went to one consumer only")
  end)
end)

-- Regression: a waiter woken (cond:signal, a queue's put or get) and then
-- cancelled before it ran used to take the wake-up with it: the next waiter
-- slept on. A waiter that ends mid-wait now passes its signal on.
describe("a woken waiter cancelled before it runs", function()
  it("queue: the value put goes to the next getter", function()
    duplex.run(function()
      local q = duplex.queue(4)
      local waiting = 0
      local a = duplex.spawn(function() waiting = waiting + 1; return q:get() end)
      local b = duplex.spawn(function() waiting = waiting + 1; return q:get(1) end)
      until_(function() return waiting == 2 end)
      duplex.sleep(0)
      assert(q:put("x"))                    -- wakes a...
      a:cancel()                            -- ...which never runs again
      assert.same({ true, "x" }, { b:join(5) })
      assert.equal(0, qlen(q))
    end)
  end)

  it("queue: the room a get made goes to the next putter", function()
    duplex.run(function()
      local q = duplex.queue(1)
      assert(q:put("full"))
      local waiting = 0
      local a = duplex.spawn(function() waiting = waiting + 1; return q:put("a") end)
      local b = duplex.spawn(function() waiting = waiting + 1; return q:put("b", 1) end)
      until_(function() return waiting == 2 end)
      duplex.sleep(0)
      assert.equal("full", q:get())         -- wakes a...
      a:cancel()                            -- ...which never runs again
      assert.same({ true, true }, { b:join(5) })
      assert.equal("b", q:get(0))
    end)
  end)

  it("cond: the signal goes to the next waiter", function()
    duplex.run(function()
      local c = duplex.cond()
      local waiting = 0
      local a = duplex.spawn(function() waiting = waiting + 1; return c:wait() end)
      local b = duplex.spawn(function() waiting = waiting + 1; return c:wait(1) end)
      until_(function() return waiting == 2 end)
      duplex.sleep(0)
      assert.is_true(c:signal())            -- wakes a...
      a:cancel()                            -- ...which never runs again
      assert.same({ true, true }, { b:join(5) })
    end)
  end)
end)

-- Regression (issue 16): a wait that timed out, or whose task was cancelled,
-- stayed in its cond's list of waiters until a later signal walked past it
-- (about 175 bytes each: polling an idle queue grew without bound). A wait
-- now takes itself off the list when it ends, whichever way it ends.
describe("waits that end without a signal leave nothing behind", function()
  local N = 20000
  -- The waits below use a tiny positive timeout: each really suspends (0
  -- would return at once for a queue), then times out.
  local TINY = 1e-6

  -- Kilobytes the Lua heap holds after a full collection.
  local function heap()
    collectgarbage(); collectgarbage()
    return collectgarbage("count")
  end

  -- N waits by fn(), each nil, msg, "ETIMEDOUT"; the heap's growth in KiB.
  -- A neighbour that keeps yielding keeps the loop from blocking (it would
  -- block at least 1 ms per timer), so each wait lasts microseconds.
  local function growth(fn, msg)
    local stop = false
    local neighbour = duplex.spawn(function()
      for _ = 1, 100 * N do
        if stop then return end
        duplex.sleep(0)
      end
    end)
    for _ = 1, 100 do fn() end              -- warm up: tables, timers
    local before = heap()
    local timedout = 0
    for _ = 1, N do
      local r, m, code = fn()
      if r == nil and m == msg and code == "ETIMEDOUT" then timedout = timedout + 1 end
    end
    local kib = heap() - before
    stop = true
    assert.same({ true }, { neighbour:join(5) })
    assert.equal(N, timedout)
    return kib
  end

  -- The old code grew by 3,479 KiB for 20,000 waits (cond, get or put
  -- alike); the new one by 0 KiB. The bound is far from both.
  local BOUND = 200

  it("cond:wait(timeout) on an idle cond, 20,000 times", function()
    duplex.run(function()
      local c = duplex.cond()
      local kib = growth(function() return c:wait(TINY) end, "cond:wait: timed out")
      assert.is_true(kib < BOUND, ("the heap grew by %.0f KiB"):format(kib))
      assert.same(duplex.cond(), c)         -- as fresh: no waiter kept
      assert.is_false(c:signal())
    end)
  end)

  it("queue:get(timeout) on an idle queue and queue:put(v, timeout) on a full one, 20,000 times each", function()
    duplex.run(function()
      local q = duplex.queue(1)
      local kib = growth(function() return q:get(TINY) end, "queue:get: timed out")
      assert.is_true(kib < BOUND, ("get: the heap grew by %.0f KiB"):format(kib))
      assert.same(duplex.cond(), q.notempty)
      assert(q:put("full"))
      kib = growth(function() return q:put("more", TINY) end, "queue:put: timed out")
      assert.is_true(kib < BOUND, ("put: the heap grew by %.0f KiB"):format(kib))
      assert.same(duplex.cond(), q.notfull)
      assert.equal(1, qlen(q))
      assert.equal("full", q:get(0))
    end)
  end)

  it("tasks cancelled while they wait on a cond, a queue's get or its put", function()
    duplex.run(function()
      local c, empty, full = duplex.cond(), duplex.queue(1), duplex.queue(1)
      assert(full:put("x"))
      local waits = {
        function() return c:wait() end,
        function() return empty:get() end,
        function() return full:put("y", 5) end,
      }
      local waiting, tasks = 0, {}
      for i = 1, 30 do
        tasks[i] = duplex.spawn(function() waiting = waiting + 1; return waits[i % 3 + 1]() end)
      end
      until_(function() return waiting == 30 end)
      duplex.sleep(0)
      for i = 1, 30 do assert.is_true(tasks[i]:cancel()) end
      for i = 1, 30 do assert.same({ false, "canceled" }, { tasks[i]:join(5) }) end
      assert.same(duplex.cond(), c)
      assert.same(duplex.cond(), empty.notempty)
      assert.same(duplex.cond(), full.notfull)
      assert.is_false(c:signal())
      assert.equal("x", full:get(0))
    end)
  end)

  it("waiters gone from the head, the middle and the tail: the rest are signalled in order", function()
    duplex.run(function()
      local c = duplex.cond()
      local names = { "X", "A", "B", "C", "D", "E" }   -- X, B, E cancelled; C times out
      local waiting, woken, tasks = 0, {}, {}
      for i, name in ipairs(names) do
        tasks[name] = duplex.spawn(function()
          waiting = waiting + 1
          local r = pack(c:wait(name == "C" and 0.01 or 5))
          if r[1] then woken[#woken + 1] = name end
          return unpack(r, 1, r.n)
        end)
        until_(function() return waiting == i end)   -- each begins waiting in turn
        duplex.sleep(0)
      end
      for _, name in ipairs { "X", "B", "E" } do assert.is_true(tasks[name]:cancel()) end
      assert.same({ true, nil, "cond:wait: timed out", "ETIMEDOUT" }, { tasks.C:join(5) })
      assert.is_true(c:signal())
      assert.same({ true, true }, { tasks.A:join(5) })
      assert.is_true(c:signal())
      assert.same({ true, true }, { tasks.D:join(5) })
      assert.same({ "A", "D" }, woken)
      assert.is_false(c:signal())
    end)
  end)
end)

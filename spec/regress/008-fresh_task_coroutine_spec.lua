-- Symptom: a new task inherited state from a task that had finished: a
-- debug hook set in one task kept running in a later one, and
-- coroutine.running() of a finished task became a later task's identity
-- (so per-coroutine tables keyed by it mixed tasks up).
-- Cause: the scheduler kept the coroutines of tasks that returned in a
-- pool and gave them to new tasks as they were (hook, identity and all).
-- Fix: every task runs in a coroutine of its own, never reused.
local duplex = require "duplex"
local helpers = require "spec.helpers"
local pack = table.pack or function(...) return { n = select("#", ...), ... } end

describe("regression 008: a new task inherits nothing from a finished one", function()
  it("gets a coroutine of its own, without the hook a finished task set", function()
    -- what a fresh coroutine has (no hook, unless busted runs under one)
    local fresh = pack(debug.gethook(coroutine.create(function() end)))
    local r = duplex.run(function()
      local first = duplex.spawn(function()
        local co = coroutine.running()
        local function hook() end
        debug.sethook(hook, "l")             -- a line hook, in this coroutine only
        local h, mask = debug.gethook()
        return co, rawequal(h, hook), mask, hook
      end)
      local ok1, co1, hookset1, mask1, hook1 = first:join(5)
      local second = duplex.spawn(function()
        local co = coroutine.running()
        return co, pack(debug.gethook())
      end)
      local ok2, co2, hook2 = second:join(5)
      return { ok1 = ok1, co1 = co1, hookset1 = hookset1, mask1 = mask1, hook1 = hook1,
               ok2 = ok2, co2 = co2, hook2 = hook2 }
    end)
    -- the first task did set its hook
    assert.same({ true, true, "l" }, { r.ok1, r.hookset1, r.mask1 })
    assert.is_true(r.ok2)
    assert.equal("thread", type(r.co1))
    assert.equal("thread", type(r.co2))
    assert.is_false(rawequal(r.co1, r.co2), "runs in the first task's coroutine")
    -- (LuaJIT has one hook for all its coroutines: there the second task
    -- sees the first one's, whatever the scheduler does)
    if not helpers.luajit then
      assert.same({ runs_in_first_tasks_coroutine = false, has_first_tasks_hook = false },
        { runs_in_first_tasks_coroutine = rawequal(r.co1, r.co2),
          has_first_tasks_hook = rawequal(r.hook1, r.hook2[1]) })
      assert.same(fresh, r.hook2)
    end
  end)

  it("tasks spawned one after another each run in a distinct coroutine", function()
    local N = 300
    local seen = duplex.run(function()
      local seen = {}           -- keeps every coroutine alive: none can be freed and its address reused
      for i = 1, N do
        local t = duplex.spawn(function() return coroutine.running() end)
        local ok, co = t:join(5)
        assert.is_true(ok)
        seen[i] = co
      end
      -- and the same for tasks that end by themselves, unjoined
      for i = N + 1, 2 * N do
        duplex.spawn(function() seen[i] = coroutine.running() end)
        duplex.sleep(0)
      end
      return seen
    end)
    local distinct, firstdup = {}, nil
    for i = 1, 2 * N do
      assert.equal("thread", type(seen[i]), "task " .. i)
      if distinct[seen[i]] and not firstdup then
        firstdup = string.format("task %d runs in task %d's coroutine", i, distinct[seen[i]])
      end
      distinct[seen[i]] = distinct[seen[i]] or i
    end
    assert.is_nil(firstdup)
  end)
end)

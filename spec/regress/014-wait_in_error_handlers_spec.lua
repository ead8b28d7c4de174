-- Symptom: a duplex.sleep (or any socket wait) inside the duplex.onerror
-- handler, or inside a <close> handler of a task that failed, blocked the
-- whole process: every other task stopped for the full wait.
-- Cause: the scheduler reports a finished task (calls the done function,
-- which calls onerror, and closes the failed coroutine's to-be-closed
-- variables) after it has cleared S->running, so sleep and lx_wait took
-- the "outside duplex.run" path and blocked in nanosleep/poll.
-- Fix: while run's scheduler is active, code that is not a task's own
-- coroutine cannot wait: the wait raises an error saying "cannot wait
-- here" instead of blocking.
local duplex = require "duplex"
local helpers = require "spec.helpers"
local pack, unpack = helpers.pack, helpers.unpack

-- Run the scenario: `failing` is spawned and raises; a ticker task runs
-- every 10 ms meanwhile. Returns the seconds run took and the ticks.
local function run_with_ticker(failing)
  local ticks = 0
  local t0 = duplex.now()
  local ok, err = pcall(duplex.run, function()
    local stop = false
    local ticker = duplex.spawn(function()
      while not stop do
        ticks = ticks + 1
        duplex.sleep(0.01)
      end
    end)
    local f = duplex.spawn(failing)
    duplex.sleep(0.2)
    stop = true
    assert(ticker:join(10))
    return f
  end)
  assert(ok, err)
  return duplex.now() - t0, ticks
end

describe("regression 014: waiting where no task runs", function()
  local old
  before_each(function() old = duplex.onerror(function() end) end)
  after_each(function() duplex.onerror(old) end)

  it("raises inside the onerror handler instead of blocking the process", function()
    local result, reports = nil, 0
    duplex.onerror(function(err)
      reports = reports + 1
      if tostring(err):find("task boom", 1, true) then
        result = pack(pcall(duplex.sleep, 2.5))
      end
    end)
    local took = run_with_ticker(function()
      duplex.sleep(0.05)
      error("task boom")
    end)
    assert.is_truthy(result, "onerror was not called for the failing task")
    assert.is_false(result[1], "duplex.sleep(2.5) in onerror returned " .. tostring(result[2]))
    assert.matches("cannot wait here", tostring(result[2]), 1, true)
    assert.is_true(took < 2, string.format("run took %.2f s (the sleep blocked)", took))
  end)

  it("raises for a socket read inside the onerror handler instead of blocking", function()
    local c, p, srv = helpers.pair()
    finally(function() helpers.close(c, p, srv) end)
    c:settimeout(2.5)                  -- nothing ever arrives on c
    local result
    duplex.onerror(function(err)
      if tostring(err):find("task boom", 1, true) then
        result = pack(pcall(function() return c:read("l") end))
      end
    end)
    local took = run_with_ticker(function()
      duplex.sleep(0.05)
      error("task boom")
    end)
    assert.is_truthy(result, "onerror was not called for the failing task")
    assert.is_false(result[1], "c:read in onerror returned " .. tostring(result[2])
      .. ", " .. tostring(result[3]) .. ", " .. tostring(result[4]))
    assert.matches("cannot wait here", tostring(result[2]), 1, true)
    assert.is_true(took < 2, string.format("run took %.2f s (the read blocked)", took))
  end)

  it("raises inside a <close> handler of a failed task instead of blocking", function()
    if not helpers.lua54 then pending("Lua 5.4 only: <close>") end
    local result
    local took = run_with_ticker(function()
      helpers.with_close(function()
        result = pack(pcall(duplex.sleep, 2.5))
      end, function()
        duplex.sleep(0.05)
        error("task boom")
      end)
    end)
    assert.is_truthy(result, "the <close> handler did not run")
    assert.is_false(result[1], "duplex.sleep(2.5) in __close returned " .. tostring(result[2]))
    assert.matches("cannot wait here", tostring(result[2]), 1, true)
    assert.is_true(took < 2, string.format("run took %.2f s (the sleep blocked)", took))
  end)
end)

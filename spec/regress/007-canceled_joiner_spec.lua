-- Symptom: a task's error was never reported (onerror not called) when a
-- task that had been joining it was cancelled before the error.
-- Cause: Task:join put the joiner in the task's list of joiners and took it
-- out only on a join timeout; a cancelled joiner stayed listed, so when the
-- task failed, done() saw "someone joins this task" and left the report to
-- a join that would never return.
-- Fix: a cancelled joiner leaves the list (the task's error goes to
-- onerror exactly once, as for a task nobody joins).
local duplex = require "duplex"
local helpers = require "spec.helpers"
local pack, unpack = helpers.pack, helpers.unpack

describe("regression 007: a joiner cancelled before the joined task fails", function()
  local old_onerror
  after_each(function()
    if old_onerror then duplex.onerror(old_onerror) end
    old_onerror = nil
  end)

  it("leaves the task's error to onerror, reported once", function()
    local reports = {}
    old_onerror = duplex.onerror(function(err, traceback)
      reports[#reports + 1] = { err = tostring(err), traceback = traceback }
    end)
    local r = pack(duplex.run(function()
      local t = duplex.spawn(function()
        duplex.sleep(0.1)
        error("boom-7c21")
      end)
      local joined
      local j = duplex.spawn(function()
        joined = true
        return t:join()
      end)
      helpers.until_waiting(j, "timer")  -- j is waiting in t:join()
      assert.is_true(joined)
      assert.same({ true }, { j:cancel() })
      assert.same({ false, "canceled" }, { j:join(1) })
      -- t fails meanwhile, nobody joining it
      helpers.wait_until(function() return tostring(t) == "duplex.task (done)" end)
      local tj = pack(t:join(5))   -- (t has ended: this join does not wait)
      return tj[1], type(tj[2]) == "string" and tj[2]:match("boom%-7c21") or tj[2]
    end))
    assert.same({ n = 2, false, "boom-7c21" }, r)
    local boom = {}
    for _, rep in ipairs(reports) do
      if rep.err:find("boom-7c21", 1, true) then boom[#boom + 1] = rep.err end
    end
    assert.equal(1, #boom, "reports of t's error: " .. #boom .. " (all reports: " .. #reports .. ")")
    assert.equal(1, #reports)
  end)
end)

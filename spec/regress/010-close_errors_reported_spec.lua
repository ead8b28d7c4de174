-- Symptom: an error raised by a task's to-be-closed variable (its __close
-- handler) while the task was cancelled, or while it was unwound after an
-- error of its own, vanished: nothing reached duplex.onerror or stderr.
-- Cause: the scheduler closed the coroutine (lua_closethread /
-- lua_resetthread) and ignored its status and error object, both in cancel
-- and when a failed task ended.
-- Fix: a close error is reported through duplex.onerror(fn) as
-- fn(err, traceback), like any other error in a task.
local duplex = require "duplex"
local helpers = require "spec.helpers"

-- body() under a to-be-closed variable whose __close raises `msg` (Lua
-- 5.4 only: helpers.with_close; the specs are pending elsewhere).
local function closing(msg, body)
  return helpers.with_close(function() error(msg) end, body)
end

-- Run body() inside duplex.run with an onerror handler that records every
-- report; returns the reported errors as strings.
local function reports_of(body)
  local reports = {}
  local old = duplex.onerror(function(err, traceback)
    reports[#reports + 1] = { err = tostring(err), traceback = traceback }
  end)
  local ok, err = pcall(duplex.run, body)
  duplex.onerror(old)
  assert(ok, err)
  return reports
end

local function has(reports, pattern)
  for _, r in ipairs(reports) do
    if r.err:find(pattern) then return true end
  end
  return false
end

local function list(reports)
  local t = {}
  for _, r in ipairs(reports) do t[#t + 1] = r.err end
  return "reports: {" .. table.concat(t, " | ") .. "}"
end

describe("regression 010: errors of <close> handlers in tasks", function()
  it("are reported when the task is cancelled while it waits", function()
    if not helpers.lua54 then pending("Lua 5.4 only: <close>") end
    local reports = reports_of(function()
      local t = duplex.spawn(function()
        closing("close boom", function() duplex.sleep(10) end)
      end)
      helpers.until_waiting(t, "timer")   -- t is now waiting in sleep
      assert.is_true(t:cancel())
    end)
    assert.is_true(has(reports, "close boom"), list(reports))
    for _, r in ipairs(reports) do assert.equal("string", type(r.traceback)) end
  end)

  it("are reported beside the task's own error", function()
    if not helpers.lua54 then pending("Lua 5.4 only: <close>") end
    local reports = reports_of(function()
      duplex.spawn(function()
        closing("close boom", function()
          duplex.sleep(0)
          error("task boom")
        end)
      end)
      duplex.sleep(0.05)
    end)
    assert.is_true(has(reports, "task boom"), list(reports))
    assert.is_true(has(reports, "close boom"), list(reports))
    for _, r in ipairs(reports) do assert.equal("string", type(r.traceback)) end
  end)
end)

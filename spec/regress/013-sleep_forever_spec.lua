-- Symptom: duplex.sleep(math.huge) (or any huge number such as 1e300)
-- outside a task used 100% of a CPU instead of blocking.
-- Cause: k_sleep cast the seconds left, infinite or beyond time_t's range,
-- to time_t (undefined behaviour; on x86-64 a negative number), so
-- nanosleep failed with EINVAL at once and the loop called it again
-- for ever.
-- Fix: an infinite or huge sleep blocks without a deadline (or in chunks
-- that nanosleep accepts), using no CPU.
local helpers = require "spec.helpers"

-- Clock ticks per second for /proc/PID/stat.
local function clk_tck()
  local p = assert(io.popen("getconf CLK_TCK"))
  local n = tonumber(p:read("*l"))
  p:close()
  return n or 100
end

-- utime + stime of process pid, in seconds.
local function cpu_seconds(pid)
  local f = assert(io.open("/proc/" .. pid .. "/stat"))
  local s = f:read("*a")
  f:close()
  -- fields after the command name (which may hold spaces) start at 3
  local rest = assert(s:match(".*%)%s+(.*)"))
  local fields = {}
  for v in rest:gmatch("%S+") do fields[#fields + 1] = v end
  -- utime and stime are fields 14 and 15, i.e. 12 and 13 of `rest`
  return (tonumber(fields[12]) + tonumber(fields[13])) / clk_tck()
end

local function state(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s:match(".*%)%s+(%a)")
end

local function sleeps_idle(expr)
  local proc = helpers.spawn_process(helpers.lua .. " -e "
    .. helpers.shquote('require("duplex").sleep(' .. expr .. ')'))
  finally(function() proc:close() end)
  helpers.execute("sleep 1")
  local st = state(proc.pid)
  assert.is_truthy(st, "the child ended early")
  assert.is_true(st ~= "Z", "the child ended early")
  local cpu = cpu_seconds(proc.pid)
  assert.is_true(cpu < 0.3, string.format(
    "duplex.sleep(%s) used %.2f s of CPU in about 1 s", expr, cpu))
end

describe("regression 013: sleeping for ever outside a task", function()
  it("duplex.sleep(math.huge) blocks without using the CPU", function()
    sleeps_idle("math.huge")
  end)

  it("duplex.sleep(1e300) blocks without using the CPU", function()
    sleeps_idle("1e300")
  end)
end)

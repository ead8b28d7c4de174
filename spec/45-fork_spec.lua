-- spec/45-fork_spec.lua: processes forked OUTSIDE duplex.run, after a run
-- (issue 16, item 5). The usual pre-fork server (listen, fork N workers,
-- duplex.run in each) must work whatever ran before the fork: a child's
-- first run gives it an epoll instance of its own (the inherited one is the
-- parent's), a signal pipe of its own (the parent's would carry either
-- process's signals to whichever reads first), and never removes a
-- registration of the parent's. A fork INSIDE run stays unsupported
-- (README; spec/51 keeps a pending spec for it).
--
-- Every process involved is a CHILD Lua process (spec/child_helpers.lua)
-- that forks with build/lfork.so (spec/shim/lfork.c), never busted itself;
-- workers are stopped by PID and reaped, and end on their own after 30 s
-- at most. Needs cc (the shims are built here): pending without it. The
-- children load the build helpers.lua names, so DUPLEX_CPATH runs this file
-- against the poll or the signalfd build too. Loopback and port 0 only.

local ch = require "spec.child_helpers"

local function need_lfork()
  local so, why = ch.build("lfork.so", "lfork.c",
    "-shared -fPIC -I" .. (os.getenv("LUA_INCDIR") or "/usr/include/lua5.4"))
  if not so or not ch.fakegai() then pending(why or "no fakegai shim") end
end

-- Prepended to every child's body: fork(), and a first run that leaves the
-- listener `srv` registered with the loop (its accept waited, then timed
-- out), as a server's warm-up or an earlier phase of a program would.
local PRELUDE = [==[
local lfork = assert(package.loadlib("./build/lfork.so", "luaopen_lfork"))()
local srv = assert(duplex.listen("127.0.0.1", 0))
local _, port = srv:getsockname()
local warmup = { duplex.run(function() return srv:accept(0.05) end) }
assert(warmup[3] == "ETIMEDOUT", "warm-up: " .. tostring(warmup[2]))
-- A child that runs fn() and ends with _exit: 0 if fn returned true, 1 if
-- it returned false, 2 if it raised; 3 if it still ran after 30 s.
local function fork(fn)
  local pid = assert(lfork.fork())
  if pid ~= 0 then return pid end
  local ok, good = pcall(fn)
  if not ok then io.stderr:write("fork child: ", tostring(good), "\n") end
  lfork._exit(ok and (good and 0 or 1) or 2)
end
local function watchdog()
  duplex.spawn(function() duplex.sleep(30); lfork._exit(3) end)
end
]==]

describe("fork", function()
  it("four workers forked after a run answer all 30 requests, then are stopped by PID", function()
    need_lfork()
    local r = ch.run(PRELUDE .. [==[
      local function worker()
        local me = mypid()
        duplex.run(function()
          watchdog()
          while true do
            local c = assert(srv:accept())
            duplex.spawn(function()
              local line = c:read("l")
              c:write("pong ", tostring(line), " ", me, "\n")
              c:close()
            end)
          end
        end)
      end
      local pids, workers = {}, {}
      for i = 1, 4 do
        pids[i] = fork(worker)
        workers[pids[i]] = true
      end
      local ok, answers = pcall(duplex.run, function()
        local tasks, answers = {}, {}
        for i = 1, 30 do
          tasks[i] = duplex.spawn(function()
            local c = assert(duplex.connect("127.0.0.1", port, { timeout = 5 }))
            c:settimeout(5)           -- hang guard: the old code answered none
            c:write("r", i, "\n")
            local line, msg, code = c:read("l")
            c:close()
            return line or (tostring(msg) .. " " .. tostring(code))
          end)
        end
        for i = 1, 30 do
          local _, line = tasks[i]:join()
          answers[i] = line
        end
        return answers
      end)
      local waits = {}
      for i, pid in ipairs(pids) do
        os.execute("kill -TERM " .. pid)
        waits[i] = { lfork.wait(pid) }
      end
      assert(ok, answers)
      local answered, strangers = 0, {}
      for i = 1, 30 do
        local pid = answers[i]:match("^pong r" .. i .. " (%d+)$")
        if pid and workers[tonumber(pid)] then answered = answered + 1
        else strangers[#strangers + 1] = answers[i] end
      end
      emit({ answered = answered, strangers = strangers, waits = waits })
    ]==], nil, 40)
    assert.same({
      answered = 30,
      strangers = {},
      waits = { { "signal", 15 }, { "signal", 15 }, { "signal", 15 }, { "signal", 15 } },
    }, r)
  end)
end)

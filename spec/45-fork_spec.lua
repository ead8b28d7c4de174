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
-- that forks with build/shim/lfork.so (spec/shim/lfork.c), never busted
-- itself; workers are stopped by PID and reaped, and end on their own after
-- 30 s at most. Needs the shims (`make shims`): fails without them. The
-- children load the build helpers.lua names, so DUPLEX_CPATH runs this file
-- against the poll or the signalfd build too. Loopback and port 0 only.

local ch = require "spec.child_helpers"

local function need_lfork()
  assert(ch.shim("lfork"))
  assert(ch.fakegai())
end

-- Prepended to every child's body: fork(), and a first run that leaves the
-- listener `srv` registered with the loop (its accept waited, then timed
-- out), as a server's warm-up or an earlier phase of a program would.
local PRELUDE = [==[
local lfork = assert(package.loadlib((os.getenv("DUPLEX_SHIMS") or "build/shim") .. "/lfork.so",
                                    "luaopen_lfork"))()
local srv = assert(duplex.listen("127.0.0.1", 0))
local _, port = srv:getsockname()
local warmup = { duplex.run(function() return srv:accept(0.05) end) }
assert(warmup[3] == "ETIMEDOUT", "warm-up: " .. tostring(warmup[2]))
-- A child that runs fn() and ends with _exit: 0 if fn returned true, 1 if
-- it returned false, 2 if it raised (3: its watchdog fired).
local function fork(fn)
  local pid = assert(lfork.fork())
  if pid ~= 0 then return pid end
  local ok, good = pcall(fn)
  if not ok then io.stderr:write("fork child: ", tostring(good), "\n") end
  lfork._exit(ok and (good and 0 or 1) or 2)
end
-- Inside run: a task that ends the process after 30 s (cancel it to end).
local function watchdog()
  return duplex.spawn(function() duplex.sleep(30); lfork._exit(3) end)
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

  it("a child that closes an inherited listener leaves the parent's registration alone", function()
    need_lfork()
    local r = ch.run(PRELUDE .. [==[
      local pid = fork(function()
        srv:close()           -- outside run: the loop is still the parent's
        return true
      end)
      local wait = { lfork.wait(pid) }
      local res = duplex.run(function()
        local acceptor = duplex.spawn(function()
          local c = assert(srv:accept())
          c:close()
          return "accepted"
        end)
        until_waiting(acceptor)   -- the acceptor runs first, and waits
        local c = assert(duplex.connect("127.0.0.1", port, { timeout = 3 }))
        -- (a deadline on accept itself would not tell: its last try succeeds)
        local got = { acceptor:join(3) }
        acceptor:cancel()
        c:close()
        return got
      end)
      emit({ wait = wait, parent = res })
    ]==], nil, 20)
    assert.same({ wait = { "exit", 0 }, parent = { true, "accepted" } }, r)
  end)

  -- The parent watches USR1 and runs; the worker, forked after the
  -- parent's run, inherits the handler. The parent signals the worker ten
  -- times while both run: each time the worker's hook must answer, and the
  -- parent's never run.
  it("onsignal: a worker's signals reach its own hook, never the parent's, while both run", function()
    need_lfork()
    local r = ch.run(PRELUDE .. [==[
      local ack                -- the worker's connection to the parent
      local parent_got = {}
      duplex.onsignal("USR1", function(name)
        if ack then ack:write(name, "\n") else parent_got[#parent_got + 1] = name end
      end)
      duplex.run(function() return srv:accept(0.05) end)   -- the handler's pipe is watched
      local pid = fork(function()
        return duplex.run(function()
          local dog = watchdog()
          local c = assert(duplex.connect("127.0.0.1", port, { timeout = 5 }))
          ack = c
          assert(c:write("ready\n"))
          c:settimeout(20)
          local eof = c:read("l") == nil   -- until the parent closes
          dog:cancel()
          return eof
        end)
      end)
      local ok, acks = pcall(duplex.run, function()
        local c = assert(srv:accept(5))
        c:settimeout(2)
        local first, msg, code = c:read("l")
        local acks = { first or (msg .. " " .. code) }
        for _ = 1, 10 do
          os.execute("kill -USR1 " .. pid)
          local line, msg, code = c:read("l")
          acks[#acks + 1] = line or (msg .. " " .. code)
          if not line then break end
        end
        c:close()
        return acks
      end)
      if not ok then os.execute("kill -KILL " .. pid) end
      local wait = { lfork.wait(pid) }
      assert(ok, acks)
      emit({ acks = acks, parent_got = parent_got, wait = wait })
    ]==], nil, 40)
    assert.same({
      acks = { "ready", "USR1", "USR1", "USR1", "USR1", "USR1",
               "USR1", "USR1", "USR1", "USR1", "USR1" },
      parent_got = {},
      wait = { "exit", 0 },
    }, r)
  end)

  -- The worker signals itself before its first run, and the parent runs
  -- before the worker does: the parent must not take that signal (it
  -- would, from the pipe they shared), and the worker's run must see it.
  it("onsignal: a signal that comes between the fork and the worker's run reaches the worker there", function()
    need_lfork()
    local r = ch.run(PRELUDE .. [==[
      local got = {}
      duplex.onsignal("USR1", function(name) got[#got + 1] = name end)
      duplex.run(function() return srv:accept(0.05) end)   -- the handler's pipe is watched
      local pid = fork(function()
        -- outside run, every call below blocks: the loop does not turn
        local c = assert(duplex.connect("127.0.0.1", port, { timeout = 5 }))
        os.execute("kill -USR1 " .. mypid())     -- handled before kill returns
        assert(c:write("signalled\n"))
        c:settimeout(10)
        assert(c:read("l") == "go")              -- the parent has run
        c:close()
        return duplex.run(function()
          for _ = 1, 500 do                      -- hang guard: 5 s
            if #got > 0 then break end
            duplex.sleep(0.01)
          end
          return #got == 1 and got[1] == "USR1"
        end)
      end)
      local c = assert(srv:accept(5))
      c:settimeout(10)
      local said = c:read("l")
      duplex.run(function() duplex.sleep(0) end)  -- a byte of the worker's would be read here
      local parent_got = { unpack(got) }
      c:write("go\n")
      c:close()
      local wait = { lfork.wait(pid) }
      emit({ said = said, parent_got = parent_got, wait = wait })
    ]==], nil, 20)
    assert.same({ said = "signalled", parent_got = {}, wait = { "exit", 0 } }, r)
  end)
end)

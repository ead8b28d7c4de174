-- spec/51-resolve_spec.lua: duplex.resolve and name lookups off the loop
-- (issue 9). Lookups inside a task go to a pool of threads while the other
-- tasks run; numeric hosts never touch it; a lookup honours its timeout and
-- task cancellation; connect's timeout covers lookup + connect; outside a
-- task a lookup blocks; a fork child makes a pool of its own.
--
-- Everything that looks a name up runs in a CHILD process with
-- build/shim/fakegai.so preloaded (spec/shim/fakegai.c: NAME.slow.test answers
-- 127.0.0.1 after FAKEGAI_SLOW seconds, NAME.v4.test 127.0.0.1 at once,
-- NAME.v6first.test ::1 then 127.0.0.1, NAME.fail.test EAI_NONAME, a name
-- with a "group" label 239.255.0.1 and one with a "lo2" label 127.0.0.2
-- instead of 127.0.0.1), never in
-- busted's own process. Needs the shims (`make shims`): the tests fail
-- without them. Measured figures are written to stderr with a "[measured]"
-- prefix.

local duplex = require "duplex"
local helpers = require "spec.helpers"
local ch = require "spec.child_helpers"

local FAKEGAI, WHY = ch.fakegai()

local function need_fakegai()
  if not FAKEGAI then error(WHY, 2) end
end

-- On stderr: stdout is busted's (-o json).
local function measured(fmt, ...)
  io.stderr:write("\n[measured] ", fmt:format(...), "\n")
end

local function answer(host, port, family)
  return { host = host, port = port, family = family }
end

-- Child code: a task that pings over a loopback pair every 10 ms until
-- `stop()` returns true, measuring round trips and the gaps between answers.
-- start_pings() -> stats, pinger; stats: n, max_rtt, max_gap.
local PINGS = [==[
local function start_pings(stop)
  local srv = assert(duplex.listen("127.0.0.1", 0))
  local _, port = srv:getsockname()
  local a = assert(duplex.connect("127.0.0.1", port, { timeout = 5 }))
  local b = assert(srv:accept(5))
  srv:close()
  a:settimeout(5)
  b:settimeout(5)
  local stats = { n = 0, max_rtt = 0, max_gap = 0, failed = 0 }
  local echo = duplex.spawn(function()
    for _ = 1, 100000 do
      local line = b:read("l")
      if not line then break end
      b:write(line, "\n")
    end
  end)
  local pinger = duplex.spawn(function()
    local last = duplex.now()
    for i = 1, 100000 do
      if stop() then break end
      local t = duplex.now()
      a:write("ping ", i, "\n")
      local line = a:read("l")
      local now = duplex.now()
      if line ~= "ping " .. i then stats.failed = stats.failed + 1 end
      stats.n = stats.n + 1
      stats.max_rtt = math.max(stats.max_rtt, now - t)
      stats.max_gap = math.max(stats.max_gap, now - last)
      last = now
      duplex.sleep(0.01)
    end
    a:close()
    b:close()
    echo:join(5)
  end)
  return stats, pinger
end
]==]

describe("duplex.resolve", function()
  describe("in busted's process (no name is looked up here)", function()
    it("numeric hosts and unix paths answer with whole tables", function()
      assert.same({ answer("127.0.0.1", 80, "inet") }, duplex.resolve("127.0.0.1", 80))
      assert.same({ answer("127.0.0.1", 0, "inet") }, duplex.resolve("127.0.0.1"))
      assert.same({ answer("::1", 443, "inet6") }, duplex.resolve("::1", 443))
      assert.same({ answer("/tmp/x.sock", nil, "unix") }, duplex.resolve("unix:/tmp/x.sock"))
      assert.same({ answer("@abstract", nil, "unix") }, duplex.resolve("unix:@abstract", 5))
      assert.same({ answer("127.0.0.1", 1, "inet") }, duplex.resolve("127.0.0.1", 1, { family = "inet" }))
      local r, msg, code = duplex.resolve("127.0.0.1", 1, { family = "inet6" })
      assert.same({ nil, "resolve 127.0.0.1: Address family for hostname not supported", "EAI_ADDRFAMILY" },
        { r, msg, code })
    end)

    it("argument errors raise", function()
      local function err(...)
        local ok, e = pcall(duplex.resolve, ...)
        assert.is_false(ok)
        return e
      end
      assert.matches("bad argument #1 to '[%w%.]*resolve' %(string expected, got nil%)", err(nil))
      assert.matches("bad argument #1 to '[%w%.]*resolve' %(host contains a zero byte%)", err("a\0b"))
      assert.matches("bad argument #2 to '[%w%.]*resolve' %(port out of range%)", err("x", 70000))
      assert.matches("bad argument #2 to '[%w%.]*resolve' %(port out of range%)", err("x", -1))
      assert.matches("bad argument #3 to '[%w%.]*resolve' %(option 'family' must be \"inet\" or \"inet6\"%)",
        err("x", nil, { family = "unix" }))
      assert.matches("bad argument #3 to '[%w%.]*resolve' %(option 'timeout': timeout must be a non%-negative number%)",
        err("x", nil, { timeout = -1 }))
      assert.matches("bad argument #3 to '[%w%.]*resolve' %(option 'timeout': number expected, got string%)",
        err("x", nil, { timeout = "1" }))
      assert.matches("bad argument #3 to '[%w%.]*resolve' %(unknown option 'bogus'%)", err("x", nil, { bogus = 1 }))
    end)
  end)

  describe("in a child with fakegai", function()
    it("numeric hosts never touch the pool: no thread is made, until a name is looked up", function()
      need_fakegai()
      local r = ch.run([[
        local out = { before = nthreads() }
        out.task = duplex.run(function()
          local t = {}
          t.v4 = duplex.resolve("127.0.0.1", 80)
          t.v6 = duplex.resolve("::1", 443)
          t.fam = duplex.resolve("127.0.0.1", 8, { family = "inet" })
          t.unix = duplex.resolve("unix:/tmp/x.sock")
          local srv = assert(duplex.listen("127.0.0.1", 0))
          local _, port = srv:getsockname()
          local c = assert(duplex.connect("127.0.0.1", port, { timeout = 5 }))
          -- numeric and Unix binds are not looked up either
          local b1 = assert(duplex.connect("127.0.0.1", port, { timeout = 5, bind = "127.0.0.2" }))
          local b2 = assert(duplex.connect("127.0.0.1", port, { timeout = 5, bind = { "127.0.0.3" } }))
          local tag = tostring(os.time()) .. tostring(math.random(1e9))
          local us = assert(duplex.listen("unix:@dx51srv" .. tag))
          local b3 = assert(duplex.connect("unix:@dx51srv" .. tag, nil, { timeout = 5, bind = "unix:@dx51cli" .. tag }))
          t.binds = { (b1:getsockname()), (b2:getsockname()), (b3:getsockname()) == "@dx51cli" .. tag }
          b1:close(); b2:close(); b3:close(); us:close()
          local u = assert(duplex.udp("127.0.0.1", 0))
          local _, up = u:getsockname()
          local v = assert(duplex.udp())
          t.sendto = v:sendto("x", "127.0.0.1", up) == v
          t.uconnect = v:connect("127.0.0.1", up) == v
          u:settimeout(5)
          t.got = u:recvfrom()
          c:close(); srv:close(); u:close(); v:close()
          t.threads = nthreads()
          return t
        end)
        out.after = nthreads()
        out.name = duplex.run(function() return duplex.resolve("n.v4.test", 5) end)
        out.after_name = nthreads()
        emit(out)
      ]], {}, 20)
      measured("threads: %d at start, %d in the task after numeric lookups, %d after; %d after one name",
        r.before, r.task.threads, r.after, r.after_name)
      assert.same({
        v4 = { answer("127.0.0.1", 80, "inet") },
        v6 = { answer("::1", 443, "inet6") },
        fam = { answer("127.0.0.1", 8, "inet") },
        unix = { answer("/tmp/x.sock", nil, "unix") },
        sendto = true, uconnect = true, got = "x",
        binds = { "127.0.0.2", "127.0.0.3", true },
        threads = r.before,
      }, r.task)
      assert.equal(r.before, r.after)
      assert.same({ answer("127.0.0.1", 5, "inet") }, r.name)
      assert.equal(r.before + 1, r.after_name)
    end)

    it("a 2 s lookup in a task: another task answers pings every 10 ms throughout", function()
      need_fakegai()
      local r = ch.run(PINGS .. [[
        emit(duplex.run(function()
          local done = false
          local stats, pinger = start_pings(function() return done end)
          duplex.sleep(0.05)
          local n0 = stats.n
          local el, res, msg, code = timed(duplex.resolve, "a.slow.test", 80)
          local during = stats.n - n0
          done = true
          pinger:join(5)
          return { elapsed = el, answer = res, msg = msg, code = code, during = during,
                   n = stats.n, max_rtt = stats.max_rtt, max_gap = stats.max_gap, failed = stats.failed }
        end))
      ]], { FAKEGAI_SLOW = "2" }, 25)
      measured("slow lookup (2 s): took %.3f s; %d pings answered meanwhile; max round trip %.1f ms, max gap between answers %.1f ms",
        r.elapsed, r.during, r.max_rtt * 1000, r.max_gap * 1000)
      assert.same({ answer("127.0.0.1", 80, "inet") }, r.answer)
      assert.same({ nil, nil, 0 }, { r.msg, r.code, r.failed })
      assert.is_true(r.elapsed >= 1.9 and r.elapsed < 5, "lookup took " .. r.elapsed)
      -- about 200 pings of 10 ms in 2 s; a blocked loop would answer none
      assert.is_true(r.during >= 100, "only " .. r.during .. " pings during the lookup")
      assert.is_true(r.max_rtt < 1, "a ping waited " .. r.max_rtt .. " s")      -- blocked: 2 s
      assert.is_true(r.max_gap < 1, "pings stopped for " .. r.max_gap .. " s")
    end)

    it("{timeout = 0.5}: nil, msg, ETIMEDOUT after about 0.5 s; the others run; the next lookup answers at once", function()
      need_fakegai()
      local r = ch.run([[
        emit(duplex.run(function()
          local ticks = 0
          local ticker = duplex.spawn(function()
            for _ = 1, 100000 do ticks = ticks + 1; duplex.sleep(0.01) end
          end)
          local el, res, msg, code = timed(duplex.resolve, "b.slow.test", 80, { timeout = 0.5 })
          local during = ticks
          -- the timed-out lookup's thread is busy 1.5 s more: another answers
          local el2, res2 = timed(duplex.resolve, "c.v4.test", 81, { timeout = 5 })
          local el3, r3, m3, c3 = timed(duplex.resolve, "d.slow.test", 82, { timeout = 0 })
          ticker:cancel()
          return { elapsed = el, r = { res, msg, code }, ticks = during,
                   elapsed2 = el2, answer2 = res2, elapsed3 = el3, r3 = { r3, m3, c3 } }
        end))
      ]], { FAKEGAI_SLOW = "2" }, 20)
      measured("resolve timeout 0.5 s: returned after %.3f s (error %+.1f ms), %d ticks of 10 ms meanwhile; the next lookup took %.1f ms",
        r.elapsed, (r.elapsed - 0.5) * 1000, r.ticks, r.elapsed2 * 1000)
      assert.same({ nil, "resolve b.slow.test: Connection timed out", "ETIMEDOUT" }, r.r)
      assert.is_true(r.elapsed >= 0.49 and r.elapsed < 1.5, "took " .. r.elapsed)
      assert.is_true(r.ticks >= 20, "only " .. r.ticks .. " ticks during the lookup")
      assert.same({ answer("127.0.0.1", 81, "inet") }, r.answer2)
      assert.is_true(r.elapsed2 < 1.2, "the next lookup waited for the timed-out one: " .. r.elapsed2)
      -- timeout 0: not done at once, so EAGAIN
      assert.same({ nil, "resolve d.slow.test: Resource temporarily unavailable", "EAGAIN" }, r.r3)
    end)

    it("cancelling a task waiting in resolve: join gives false, canceled; later lookups work", function()
      need_fakegai()
      local r = ch.run([[
        local fds0
        duplex.run(function() duplex.resolve("warm.v4.test") end)   -- pool and poller made
        fds0 = fdcount()
        local out = duplex.run(function()
          local t = duplex.spawn(function() return duplex.resolve("d.slow.test", 1) end)
          until_waiting(t)
          local canceled = t:cancel()
          local j = { t:join(5) }
          local el, res = timed(duplex.resolve, "e.v4.test", 2, { timeout = 5 })
          local el3, res3 = timed(duplex.resolve, "f.slow.test", 3, { timeout = 5 })
          return { canceled = canceled, join = j, answer = res, elapsed = el, answer3 = res3, elapsed3 = el3 }
        end)
        out.fds = fdcount() - fds0
        emit(out)
      ]], { FAKEGAI_SLOW = "0.5" }, 20)
      assert.same({
        canceled = true, join = { false, "canceled" },
        answer = { answer("127.0.0.1", 2, "inet") },
        answer3 = { answer("127.0.0.1", 3, "inet") },
        fds = 0,
      }, { canceled = r.canceled, join = r.join, answer = r.answer, answer3 = r.answer3, fds = r.fds })
      assert.is_true(r.elapsed < 1, "the lookup after the cancel took " .. r.elapsed)
      assert.is_true(r.elapsed3 >= 0.45 and r.elapsed3 < 3, "a slow lookup took " .. r.elapsed3)
    end)

    it("cancelled lookups leave the queue at once, not when the garbage collector finds them", function()
      need_fakegai()
      -- 12 lookups of 0.5 s: 4 run, 8 wait in the queue; all 12 tasks are
      -- cancelled. The next lookup should wait only for the 4 running ones
      -- (about 0.4 s more), not for the 8 queued ones of tasks that are gone
      -- (two more rounds: about 1.4 s).
      local r = ch.run([[
        collectgarbage("stop")       -- as if the collector had not come by yet
        emit(duplex.run(function()
          local tasks = {}
          for i = 1, 12 do
            tasks[i] = duplex.spawn(function() return duplex.resolve("gone" .. i .. ".slow.test") end)
          end
          duplex.sleep(0.1)
          for i = 1, 12 do tasks[i]:cancel() end
          local joins = {}
          for i = 1, 12 do joins[i] = { tasks[i]:join(5) } end
          local el, res = timed(duplex.resolve, "next.v4.test", 1, { timeout = 10 })
          return { elapsed = el, answer = res, join1 = joins[1], join12 = joins[12] }
        end))
      ]], { FAKEGAI_SLOW = "0.5" }, 30)
      measured("a lookup after cancelling 12 tasks in 0.5 s lookups (8 of them queued) took %.3f s", r.elapsed)
      assert.same({ answer = { answer("127.0.0.1", 1, "inet") },
                    join1 = { false, "canceled" }, join12 = { false, "canceled" } },
        { answer = r.answer, join1 = r.join1, join12 = r.join12 })
      assert.is_true(r.elapsed < 0.9, "the next lookup waited " .. r.elapsed
        .. " s: the cancelled tasks' queued lookups ran first")
    end)

    it('connect("x.slow.test", port, {timeout = 5}) in a task connects after about 2 s while pings go on', function()
      need_fakegai()
      local r = ch.run(PINGS .. [[
        emit(duplex.run(function()
          local srv = assert(duplex.listen("127.0.0.1", 0))
          local _, port = srv:getsockname()
          local done = false
          local stats, pinger = start_pings(function() return done end)
          duplex.sleep(0.05)
          local n0 = stats.n
          local el, c, msg, code = timed(duplex.connect, "x.slow.test", port, { timeout = 5 })
          local during = stats.n - n0
          done = true
          pinger:join(5)
          local peer = c and { c:getpeername() }
          local p = srv:accept(5)
          local ok = p ~= nil
          if c then c:close() end
          if p then p:close() end
          srv:close()
          return { elapsed = el, peer = peer, port = port, msg = msg, code = code, accepted = ok,
                   during = during, max_rtt = stats.max_rtt, max_gap = stats.max_gap }
        end))
      ]], { FAKEGAI_SLOW = "2" }, 25)
      measured("connect to a 2 s name: connected after %.3f s; %d pings meanwhile, max round trip %.1f ms, max gap %.1f ms",
        r.elapsed, r.during, r.max_rtt * 1000, r.max_gap * 1000)
      assert.same({ peer = { "127.0.0.1", r.port, "inet" }, accepted = true },
        { peer = r.peer, accepted = r.accepted, msg = r.msg, code = r.code })
      assert.is_true(r.elapsed >= 1.9 and r.elapsed < 5, "connect took " .. r.elapsed)
      assert.is_true(r.during >= 100, "only " .. r.during .. " pings during the connect")
      assert.is_true(r.max_rtt < 1, "a ping waited " .. r.max_rtt .. " s")      -- blocked: 2 s
    end)

    it("connect with {timeout = 1} to a slow name: ETIMEDOUT after about 1 s (the lookup is inside the timeout)", function()
      need_fakegai()
      local r = ch.run([[
        emit(duplex.run(function()
          local srv = assert(duplex.listen("127.0.0.1", 0))
          local _, port = srv:getsockname()
          local el, c, msg, code = timed(duplex.connect, "y.slow.test", port, { timeout = 1 })
          local el2, u2, m2, c2 = timed(duplex.resolve, "z.slow.test", port, { timeout = 0.3 })
          srv:close()
          return { elapsed = el, r = { c, msg, code }, elapsed2 = el2, r2 = { u2, m2, c2 } }
        end))
      ]], { FAKEGAI_SLOW = "3" }, 20)
      measured("connect timeout 1 s on a 3 s name: returned after %.3f s (error %+.1f ms)",
        r.elapsed, (r.elapsed - 1) * 1000)
      assert.same({ nil, "connect y.slow.test: Connection timed out", "ETIMEDOUT" }, r.r)
      assert.is_true(r.elapsed >= 0.99 and r.elapsed < 2.5, "took " .. r.elapsed)
      assert.same({ nil, "resolve z.slow.test: Connection timed out", "ETIMEDOUT" }, r.r2)
    end)

    -- Child code: a task ticking every 10 ms, counting its ticks and the
    -- longest gap between two of them (a blocked loop makes a gap as long
    -- as the block). start_ticker() -> stats, ticker; stats: n, max_gap.
    local TICKER = [==[
    local function start_ticker()
      local stats = { n = 0, max_gap = 0 }
      local ticker = duplex.spawn(function()
        local last = duplex.now()
        for _ = 1, 100000 do
          duplex.sleep(0.01)
          local now = duplex.now()
          stats.n = stats.n + 1
          stats.max_gap = math.max(stats.max_gap, now - last)
          last = now
        end
      end)
      duplex.sleep(0.05)                         -- it ticks
      return stats, ticker
    end
    -- connect(host, port, opts), timed, with the ticks meanwhile; then the
    -- client's local address and the peer its server saw, both closed.
    local function connect_ticking(srv, host, port, opts)
      local stats, ticker = start_ticker()
      local n0 = stats.n
      stats.max_gap = 0
      local el, c, msg, code = timed(duplex.connect, host, port, opts)
      local out = { elapsed = el, ticks = stats.n - n0, max_gap = stats.max_gap,
                    r = { c and true, msg, code } }
      ticker:cancel()
      if c then
        out.sockname = { c:getsockname() }
        local p = srv:accept(5)
        out.peer = p and { p:getpeername() }
        if p then p:close() end
        c:close()
      end
      return out
    end
    ]==]

    it('connect("127.0.0.1", port, {bind = a 1 s name}) in a task: a 10 ms ticker runs throughout; the socket is bound to its address', function()
      need_fakegai()
      local r = ch.run(TICKER .. [[
        local srv = assert(duplex.listen("127.0.0.1", 0))
        local _, port = srv:getsockname()
        local out = {}
        -- outside a task the lookup blocks, and binds the same
        local el, c = timed(duplex.connect, "127.0.0.1", port, { bind = "o.lo2.slow.test", timeout = 5 })
        out.outside = { elapsed = el, sockname = c and { c:getsockname() } }
        if c then c:close(); srv:accept(5):close() end
        out.task = duplex.run(function()
          return connect_ticking(srv, "127.0.0.1", port, { bind = "b.lo2.slow.test", timeout = 5 })
        end)
        out.port = port
        srv:close()
        emit(out)
      ]], { FAKEGAI_SLOW = "1" }, 25)
      local t = r.task
      measured("connect bound to a 1 s name: %.3f s, %d ticks of 10 ms meanwhile, longest gap %.1f ms",
        t.elapsed, t.ticks, t.max_gap * 1000)
      assert.same({ true }, t.r)
      assert.equal("127.0.0.2", t.sockname[1])
      assert.same(t.sockname, t.peer)
      assert.same({ "127.0.0.2", "inet" }, { r.outside.sockname[1], r.outside.sockname[3] })
      assert.is_true(r.outside.elapsed >= 0.9, "outside a task: " .. r.outside.elapsed)
      assert.is_true(t.elapsed >= 0.9 and t.elapsed < 10, "took " .. t.elapsed)
      -- about 100 ticks in 1 s; a blocked loop ticks 0 times
      assert.is_true(t.ticks > 50, "the ticker ran " .. t.ticks .. " times during the bind lookup")
      assert.is_true(t.max_gap < 0.5, "the ticker stopped for " .. t.max_gap .. " s")
    end)

    it("a bind name and a host name, both slow: both are looked up in the pool while the ticker runs; the timeout bounds them together", function()
      need_fakegai()
      local r = ch.run(TICKER .. [[
        local srv = assert(duplex.listen("127.0.0.1", 0))
        local _, port = srv:getsockname()
        emit(duplex.run(function()
          local out = {}
          out.both = connect_ticking(srv, "h.slow.test", port, { bind = { "b.lo2.slow.test", 0 }, timeout = 5 })
          -- one deadline: the bind lookup's second leaves 0.5 s to the host's
          out.late = connect_ticking(srv, "h2.slow.test", port, { bind = "b2.lo2.slow.test", timeout = 1.5 })
          -- the bind lookup alone outlasts the timeout
          out.bind = connect_ticking(srv, "127.0.0.1", port, { bind = "t.slow.test", timeout = 0.3 })
          out.threads = nthreads()
          out.port = port
          -- its argument is checked before any lookup, as outside a task
          out.badport = { pcall(duplex.connect, "127.0.0.1", port, { bind = { "p.slow.test", 70000 } }) }
          out.badhostport = { pcall(duplex.connect, "q.slow.test", 70000, { bind = "p.slow.test" }) }
          srv:close()
          return out
        end))
      ]], { FAKEGAI_SLOW = "1" }, 30)
      measured("bind and host names of 1 s each: %.3f s, %d ticks, longest gap %.1f ms; timeout 1.5 s: %.3f s; bind lookup under timeout 0.3 s: %.3f s",
        r.both.elapsed, r.both.ticks, r.both.max_gap * 1000, r.late.elapsed, r.bind.elapsed)
      assert.same({ true }, r.both.r)
      assert.same({ "127.0.0.2", "inet" }, { r.both.sockname[1], r.both.sockname[3] })
      assert.same({ "127.0.0.2", r.both.sockname[2], "inet" }, r.both.peer)
      assert.is_true(r.both.elapsed >= 1.9 and r.both.elapsed < 10, "took " .. r.both.elapsed)
      assert.is_true(r.both.ticks > 100, "the ticker ran " .. r.both.ticks .. " times during the lookups")
      assert.is_true(r.both.max_gap < 0.5, "the ticker stopped for " .. r.both.max_gap .. " s")
      assert.is_true(r.threads >= 2, "no lookup thread: " .. r.threads)
      -- with a timeout of its own the host lookup (1 s) would have succeeded
      assert.same({ nil, "connect h2.slow.test: Connection timed out", "ETIMEDOUT" }, r.late.r)
      assert.is_true(r.late.elapsed >= 1.45 and r.late.elapsed < 5, "took " .. r.late.elapsed)
      assert.same({ nil, "bind t.slow.test: Connection timed out", "ETIMEDOUT" }, r.bind.r)
      assert.is_false(r.badport[1])
      assert.matches("^bad argument #3 to '[%w.]*connect' %(option 'bind': port must be an integer from 0 to 65535%)$",
        r.badport[2])
      assert.is_false(r.badhostport[1])
      assert.matches("^bad argument #2 to '[%w.]*connect' %(port out of range%)$", r.badhostport[2])
      assert.is_true(r.bind.elapsed >= 0.25 and r.bind.elapsed < 0.9, "took " .. r.bind.elapsed)
      assert.is_true(r.bind.ticks > 10 and r.bind.max_gap < 0.5,   -- blocked: 1 s
        ("the ticker ran %d times, stopped for %.3f s"):format(r.bind.ticks, r.bind.max_gap))
    end)

    it("a task cancelled in its connect's bind lookup: join gives false, canceled; no descriptor left; later binds by name work", function()
      need_fakegai()
      local r = ch.run([[
        duplex.run(function() duplex.resolve("warm.v4.test") end)   -- pool and poller made
        local srv = assert(duplex.listen("127.0.0.1", 0))
        local _, port = srv:getsockname()
        local fds0 = fdcount()
        local out = duplex.run(function()
          local t = { canceled = {}, joins = {} }
          -- round 1: cancelled at once (their lookups mostly still queued);
          -- round 2: cancelled 0.1 s later (4 of them in getaddrinfo by then)
          for round = 1, 2 do
            local tasks = {}
            for i = 1, 6 do
              tasks[i] = duplex.spawn(function()
                return duplex.connect("127.0.0.1", port,
                  { bind = "cb" .. round .. i .. ".lo2.slow.test", timeout = 5 })
              end)
            end
            duplex.sleep(0)     -- each task is now waiting in its bind lookup
            if round == 2 then duplex.sleep(0.1) end
            for i = 1, 6 do t.canceled[#t.canceled + 1] = tasks[i]:cancel() end
            for i = 1, 6 do t.joins[#t.joins + 1] = { tasks[i]:join(5) } end
          end
          t.fds_between = fdcount() - fds0
          local el, c, msg, code = timed(duplex.connect, "127.0.0.1", port, { bind = "next.lo2.slow.test", timeout = 10 })
          t.elapsed = el
          t.after = c and { c:getsockname() } or { c, msg, code }
          if c then c:close(); srv:accept(5):close() end
          t.threads = nthreads()
          return t
        end)
        out.fds = fdcount() - fds0
        srv:close()
        emit(out)
      ]], { FAKEGAI_SLOW = "0.5" }, 30)
      measured("a bind by name after cancelling 12 tasks in their bind lookups took %.3f s", r.elapsed)
      local all_true, all_canceled = {}, {}
      for i = 1, 12 do all_true[i], all_canceled[i] = true, { false, "canceled" } end
      assert.same({ canceled = all_true, joins = all_canceled, fds_between = 0, fds = 0 },
        { canceled = r.canceled, joins = r.joins, fds_between = r.fds_between, fds = r.fds })
      assert.same({ "127.0.0.2", "inet" }, { r.after[1], r.after[3] })
      -- the cancelled lookups still running end on their own and free their
      -- threads (the pool has at most 4: none is stuck, none more was made)
      assert.is_true(r.elapsed >= 0.45 and r.elapsed < 3, "the bind lookup after the cancels took " .. r.elapsed)
      assert.is_true(r.threads <= 5, r.threads .. " threads")
    end)

    it("a name that does not exist: nil, msg, EAI_NONAME from every call, in a task and outside", function()
      need_fakegai()
      local r = ch.run([[
        local function calls()
          local t = {}
          t.resolve = { duplex.resolve("q.fail.test", 1) }
          t.connect = { duplex.connect("q.fail.test", 1, { timeout = 5 }) }
          t.listen = { duplex.listen("q.fail.test", 0) }
          t.udp = { duplex.udp("q.fail.test", 0) }
          local u = duplex.udp()
          t.sendto = { u:sendto("x", "q.fail.test", 1) }
          t.uconnect = { u:connect("q.fail.test", 1) }
          u:close()
          t.bind = { duplex.connect("127.0.0.1", 1, { bind = "q.fail.test", timeout = 5 }) }
          t.bindport = { duplex.connect("127.0.0.1", 1, { bind = { "q.fail.test", 0 }, timeout = 5 }) }
          return t
        end
        emit({ outside = calls(), task = duplex.run(calls) })
      ]], {}, 20)
      local function want(op)
        return { nil, op .. " q.fail.test: Name or service not known", "EAI_NONAME" }
      end
      local w = {
        resolve = want("resolve"), connect = want("connect"), listen = want("listen"),
        udp = want("udp"), sendto = want("sendto"), uconnect = want("connect"),
        bind = want("bind"), bindport = want("bind"),
      }
      assert.same({ outside = w, task = w }, r)
    end)

    it("names in a task: udp, sendto, udp:connect, listen and connect go through the pool", function()
      need_fakegai()
      local r = ch.run([[
        emit(duplex.run(function()
          local t = {}
          local u = assert(duplex.udp("u.v4.test", 0))
          u:settimeout(5)
          local _, port = u:getsockname()
          t.bound = { u:getsockname() }
          local c = assert(duplex.udp())
          t.sendto = c:sendto("by name", "s.v4.test", port) == c
          t.got1 = { u:recvfrom() }
          t.uconnect = c:connect("c.v4.test", port) == c
          t.send = c:send("connected by name") == c
          t.got2 = u:recvfrom()
          local srv = assert(duplex.listen("l.v4.test", 0))
          local _, sp = srv:getsockname()
          local k = assert(duplex.connect("k.v4.test", sp, { timeout = 5 }))
          t.peer = { k:getpeername() }
          local six = duplex.udp(nil, nil, { family = "inet6" })  -- IPv6 only
          if six then
            t.six = { { six:sendto("x", "w.v4.test", port) }, { six:connect("w.v4.test", port) } }
            six:close()
          end
          k:close(); srv:close(); u:close(); c:close()
          t.port = port
          t.threads = nthreads()
          return t
        end))
      ]], {}, 20)
      local port = r.port
      assert.same({ "127.0.0.1", port, "inet" }, r.bound)
      assert.same({ true, true, true, "connected by name" }, { r.sendto, r.uconnect, r.send, r.got2 })
      assert.same({ "by name", "127.0.0.1" }, { r.got1[1], r.got1[2] })
      assert.same({ "127.0.0.1", "inet" }, { r.peer[1], r.peer[3] })
      assert.is_true(r.threads >= 2, "no lookup thread: " .. r.threads)
      if r.six then           -- a name's answers of no usable family: the message names it
        assert.same({
          { nil, "sendto w.v4.test: Address family not supported by protocol", "EAFNOSUPPORT" },
          { nil, "connect w.v4.test: Address family not supported by protocol", "EAFNOSUPPORT" },
        }, r.six)
      end
    end)

    it('setoption("join", name) in a task: the group and an interface address are looked up while a 10 ms ticker runs', function()
      need_fakegai()
      local r = ch.run([[
        local function failures(u)
          return {
            group = { u:setoption("join", "q.fail.test", "lo") },
            iface = { u:setoption("join", "239.255.0.3", "q.fail.test") },
          }
        end
        local u = assert(duplex.udp("*", 0))
        local out = { outside = failures(u) }
        out.task = duplex.run(function()
          local ticks = 0
          local ticker = duplex.spawn(function()
            for _ = 1, 100000 do ticks = ticks + 1; duplex.sleep(0.01) end
          end)
          local t = {}
          local function join(...)
            local t0 = ticks
            local el, ok, msg, code = timed(u.setoption, u, ...)
            return { ok = ok == u, msg = msg, code = code, elapsed = el, ticks = ticks - t0 }
          end
          t.group = join("join", "m.group.slow.test", "lo")          -- 239.255.0.1 on lo
          t.iface = join("join", "239.255.0.2", "i.slow.test")       -- on lo, by its address
          t.leave = join("leave", "m.group.slow.test", "lo")
          u:settimeout(0.3)
          t.timeout = join("join", "t.group.slow.test", "lo")
          u:settimeout(nil)
          t.fail = failures(u)
          ticker:cancel()
          return t
        end)
        u:close()
        emit(out)
      ]], { FAKEGAI_SLOW = "1" }, 30)
      local t = r.task
      measured("join by a 1 s name: %.3f s, %d ticks of 10 ms (%s); by an interface's 1 s name: %.3f s, %d ticks (%s)",
        t.group.elapsed, t.group.ticks, t.group.ok and "joined" or tostring(t.group.msg),
        t.iface.elapsed, t.iface.ticks, t.iface.ok and "joined" or tostring(t.iface.msg))
      for _, k in ipairs({ "group", "iface", "leave" }) do
        local j = t[k]
        assert.is_true(j.elapsed >= 0.9 and j.elapsed < 10, k .. " took " .. j.elapsed)
        assert.is_true(j.ticks > 50, k .. ": the ticker ran " .. j.ticks .. " times during the lookup")
        -- the kernel may refuse a group on lo; then it says why
        assert.is_true(j.ok or type(j.code) == "string", k .. ": " .. tostring(j.msg))
      end
      if t.group.ok then assert.is_true(t.leave.ok, "leave: " .. tostring(t.leave.msg)) end
      assert.same({ false, "join t.group.slow.test: Connection timed out", "ETIMEDOUT" },
        { t.timeout.ok, t.timeout.msg, t.timeout.code })
      assert.is_true(t.timeout.elapsed >= 0.25 and t.timeout.elapsed < 0.9, "took " .. t.timeout.elapsed)
      -- in a task and outside: the same failures
      local w = {
        group = { nil, "join q.fail.test: Name or service not known", "EAI_NONAME" },
        iface = { nil, "join q.fail.test: No such device", "ENODEV" },
      }
      assert.same({ outside = w, task = w }, { outside = r.outside, task = t.fail })
    end)

    it("a datagram socket's deadline bounds the lookups of sendto, connect and join: ETIMEDOUT by then", function()
      need_fakegai()
      -- setoption("deadline"): every call ends by then, its lookup too (a
      -- lookup used to take only the socket's timeout, and a slow name
      -- made the call outlast the deadline)
      local r = ch.run([[
        emit(duplex.run(function()
          local u = assert(duplex.udp("127.0.0.1", 0))
          local _, port = u:getsockname()
          local c = assert(duplex.udp("127.0.0.1", 0))
          local function call(name, ...)
            c:setoption("deadline", duplex.now() + 0.3)
            local el, ok, msg, code = timed(c[name], c, ...)
            return { r = { ok == c, msg, code }, elapsed = el }
          end
          local t = {
            sendto = call("sendto", "x", "s.slow.test", port),
            connect = call("connect", "c.slow.test", port),
            join = call("setoption", "join", "j.group.slow.test", "lo"),
          }
          c:setoption("deadline", false)
          t.after = c:sendto("x", "127.0.0.1", port) == c
          u:close(); c:close()
          return t
        end))
      ]], { FAKEGAI_SLOW = "2" }, 20)
      for op, prefix in pairs({ sendto = "sendto s", connect = "connect c", join = "join j.group" }) do
        assert.same({ false, prefix .. ".slow.test: Connection timed out", "ETIMEDOUT" }, r[op].r)
        assert.is_true(r[op].elapsed >= 0.25 and r[op].elapsed < 1.5, op .. " took " .. r[op].elapsed)
      end
      assert.is_true(r.after)
    end)

    it("outside a task a lookup blocks (about 2 s) and answers, without the pool", function()
      need_fakegai()
      local r = ch.run([[
        local before = nthreads()
        local el, res = timed(duplex.resolve, "g.slow.test", 7)
        emit({ before = before, after = nthreads(), elapsed = el, answer = res })
      ]], { FAKEGAI_SLOW = "2" }, 20)
      measured("a 2 s lookup outside a task blocked for %.3f s", r.elapsed)
      assert.same({ answer("127.0.0.1", 7, "inet") }, r.answer)
      assert.equal(r.before, r.after)
      assert.is_true(r.elapsed >= 1.9 and r.elapsed < 5, "took " .. r.elapsed)
    end)

    it("the family option filters the answers, in a task and outside", function()
      need_fakegai()
      local r = ch.run([[
        local function calls()
          return {
            all = duplex.resolve("x.v6first.test", 5),
            inet = duplex.resolve("x.v6first.test", 5, { family = "inet" }),
            inet6 = duplex.resolve("x.v6first.test", 5, { family = "inet6" }),
            none = { duplex.resolve("x.v4.test", 5, { family = "inet6" }) },
          }
        end
        emit({ outside = calls(), task = duplex.run(calls) })
      ]], {}, 20)
      local w = {
        all = { answer("::1", 5, "inet6"), answer("127.0.0.1", 5, "inet") },
        inet = { answer("127.0.0.1", 5, "inet") },
        inet6 = { answer("::1", 5, "inet6") },
        none = { nil, "resolve x.v4.test: Name or service not known", "EAI_NONAME" },
      }
      assert.same({ outside = w, task = w }, r)
    end)

    it("the queue is bounded: with 4 threads busy and 256 lookups queued the next gets EAGAIN", function()
      need_fakegai()
      local r = ch.run([[
        emit(duplex.run(function()
          local N = 270
          local tasks, results = {}, {}
          for i = 1, N do
            tasks[i] = duplex.spawn(function()
              results[i] = { duplex.resolve("q" .. i .. ".slow.test", 1) }
            end)
          end
          duplex.sleep(0.2)
          local refused, first, bad = 0, nil, nil
          for i = 1, N do
            if results[i] then
              refused = refused + 1
              first = first or i
              local want = "resolve q" .. i .. ".slow.test: Resource temporarily unavailable"
              if not (results[i][1] == nil and results[i][2] == want and results[i][3] == "EAGAIN") then
                bad = bad or results[i]
              end
            end
          end
          local threads = nthreads()
          for i = 1, N do tasks[i]:cancel() end
          for i = 1, N do tasks[i]:join(5) end
          -- a cancelled task's lookup leaves the queue only when its answer
          -- is collected (see "cancelled lookups leave the queue at once")
          collectgarbage()
          collectgarbage()
          local el, after = timed(duplex.resolve, "after.v4.test", 9, { timeout = 5 })
          return { refused = refused, first = first, bad = bad or false, threads = threads,
                   after = after, elapsed = el }
        end))
      ]], { FAKEGAI_SLOW = "1" }, 20)
      measured("queue bound: %d of 270 lookups refused (the first was number %d), %d threads; a lookup after cancelling the rest took %.3f s",
        r.refused, r.first or -1, r.threads, r.elapsed)
      assert.is_false(r.bad)
      -- 256 queued plus the (at most 4) that threads took off the queue
      assert.is_true(r.refused >= 10 and r.refused <= 14, r.refused .. " refused")
      assert.is_true(r.first >= 257 and r.first <= 261, "first refused: " .. tostring(r.first))
      assert.is_true(r.threads <= 5, r.threads .. " threads")
      assert.same({ answer("127.0.0.1", 9, "inet") }, r.after)
    end)

    it("the process exits cleanly while a lookup thread is still busy (lua_close unloads duplex/core.so)", function()
      need_fakegai()
      local linger = assert(ch.shim("linger"))
      -- The child returns normally, so lua5.4 closes the state (unloading
      -- core.so) while the thread of the timed-out lookup sleeps in
      -- getaddrinfo; linger.so keeps the process alive 1 s after that, as a
      -- program that goes on after lua_close would.
      local dir = os.tmpname()
      os.remove(dir)
      helpers.execute("mkdir -p " .. helpers.shquote(dir))
      local script = dir .. "/exit.lua"
      local f = assert(io.open(script, "w"))
      f:write([[
        local duplex = require "duplex"
        local r = { duplex.run(function()
          return duplex.resolve("exit.slow.test", 1, { timeout = 0.05 })
        end) }
        print(r[1], r[2], r[3])
        io.stdout:flush()
      ]])
      f:close()
      local pre = os.getenv("LD_PRELOAD")
      pre = ((pre and pre ~= "") and (pre .. " ") or "") .. FAKEGAI .. " " .. linger
      local p = io.popen(("timeout -k 2 20 env LD_PRELOAD=%s FAKEGAI_SLOW=0.3 LINGER_MS=1000 %s %s 2>&1; echo \"exit $?\""):format(
        helpers.shquote(pre), helpers.lua, helpers.shquote(script)))
      local out = p:read("*a")
      p:close()
      helpers.execute("rm -rf " .. helpers.shquote(dir))
      assert.equal("nil\tresolve exit.slow.test: Connection timed out\tETIMEDOUT\nexit 0\n", out)
    end)
  end)

  describe("fork", function()
    local function lfork_so()
      return assert(ch.shim("lfork"))
    end

    local LFORK = [==[
      local lfork = assert(package.loadlib((os.getenv("DUPLEX_SHIMS") or "build/shim") .. "/lfork.so",
                                          "luaopen_lfork"))()
    ]==]

    it("a child forked outside run, while a thread of the parent's pool is busy, makes a pool of its own", function()
      need_fakegai()
      lfork_so()
      local r = ch.run(LFORK .. [[
        local out = {}
        -- the parent's pool: one lookup done, one abandoned and still running
        out.p0 = duplex.run(function()
          local a = duplex.resolve("p0.v4.test", 1)
          local b = { duplex.resolve("p1.slow.test", 1, { timeout = 0.05 }) }
          return { a, b }
        end)
        out.parent_threads = nthreads()
        local pid = lfork.fork()
        if pid == 0 then
          local ok, res = pcall(function()
            local t = { threads0 = nthreads() }
            t.el, t.answer = timed(duplex.run, function()
              return duplex.resolve("c1.slow.test", 2, { timeout = 5 })
            end)
            t.threads1 = nthreads()
            return t
          end)
          local good = ok and res.threads0 == 1 and res.threads1 == 2 and res.answer
            and res.answer[1] and res.answer[1].host == "127.0.0.1" and res.answer[1].port == 2
          io.stderr:write("fork child: ", tostring(ok), " ",
            ok and ("threads %d then %d, lookup %.3f s"):format(res.threads0, res.threads1, res.el) or tostring(res), "\n")
          lfork._exit(good and 0 or 1)
        end
        out.wait = { lfork.wait(pid) }
        out.p2 = duplex.run(function() return duplex.resolve("p2.v4.test", 3) end)
        emit(out)
      ]], { FAKEGAI_SLOW = "0.4" }, 20)
      assert.same({
        p0 = { { answer("127.0.0.1", 1, "inet") },
               { nil, "resolve p1.slow.test: Connection timed out", "ETIMEDOUT" } },
        parent_threads = r.parent_threads,
        wait = { "exit", 0 },
        p2 = { answer("127.0.0.1", 3, "inet") },
      }, r)
    end)

    it("a child forked inside a task, with no lookup in flight, looks names up; the parent's tasks go on", function()
      need_fakegai()
      lfork_so()
      local r = ch.run(LFORK .. [[
        emit(duplex.run(function()
          duplex.resolve("warm.v4.test")           -- the parent's pool exists
          local ticker = duplex.spawn(function()
            for i = 1, 30 do duplex.sleep(0.01) end
            return "ticked"
          end)
          local pid = lfork.fork()
          if pid == 0 then
            local res = duplex.resolve("c2.slow.test", 5, { timeout = 5 })
            local good = res and res[1] and res[1].host == "127.0.0.1" and res[1].port == 5
            lfork._exit(good and 0 or 1)
          end
          local w = { lfork.wait(pid) }
          local after = duplex.resolve("p4.slow.test", 6, { timeout = 5 })
          return { wait = w, ticker = { ticker:join(5) }, after = after }
        end))
      ]], { FAKEGAI_SLOW = "0.4" }, 20)
      assert.same({
        wait = { "exit", 0 },
        ticker = { true, "ticked" },
        after = { answer("127.0.0.1", 6, "inet") },
      }, r)
    end)

    it("a child forked inside a task while another task's lookup is in flight: both lookups complete", function()
      -- Not supported: a child forked inside duplex.run shares the parent's
      -- epoll instance, so either may take the other's events (README:
      -- fork before run, or exec in the child). Kept to show the limit.
      pending("fork inside duplex.run shares the epoll instance (documented limit)")
      need_fakegai()
      lfork_so()
      -- The child inherits the parent's loop (and, with epoll, shares its
      -- kernel object) and a count of lookups in flight; its own lookups
      -- go to a new pool whose pipe it must watch, and the parent's
      -- answer must still reach the parent.
      local r = ch.run(LFORK .. [[
        emit(duplex.run(function()
          local bg = duplex.spawn(function() return duplex.resolve("p3.slow.test", 4, { timeout = 3 }) end)
          duplex.sleep(0.05)
          local pid = lfork.fork()
          if pid == 0 then
            local el, res, msg, code = timed(duplex.resolve, "c3.slow.test", 5, { timeout = 2 })
            io.stderr:write(("fork child: %s %s %s after %.3f s\n"):format(
              tostring(res and res[1] and res[1].host), tostring(msg), tostring(code), el))
            local good = res and res[1] and res[1].host == "127.0.0.1" and res[1].port == 5
            lfork._exit(good and 0 or 1)
          end
          local w = { lfork.wait(pid) }
          return { wait = w, bg = { bg:join(5) } }
        end))
      ]], { FAKEGAI_SLOW = "0.4" }, 20)
      assert.same({
        wait = { "exit", 0 },
        bg = { true, { answer("127.0.0.1", 4, "inet") } },
      }, r)
    end)
    -- (the pool's own C test, spec/core/test_resolver.c, runs in make test-core)
  end)
end)

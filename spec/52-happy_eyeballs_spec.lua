-- spec/52-happy_eyeballs_spec.lua: connect to a name with several
-- addresses (issue 9, RFC 8305): families interleaved starting with the
-- first, the next address after 250 ms or at once when the previous fails,
-- the first to connect wins and the rest are closed, one deadline for all,
-- the last real error when all fail.
--
-- Runs in CHILD processes with build/shim/fakegai.so preloaded: x.v6first.test
-- answers ::1 then 127.0.0.1. A black hole on [::1]:P (listen with backlog
-- 0, v6only, and one connection to fill its queue: later SYNs are dropped)
-- is paired with a listener on 127.0.0.1:P (the same port). Each scenario
-- runs inside a task and outside duplex.run, and must leave no descriptor
-- open. Measured figures are written to stderr with a "[measured]"
-- prefix. IPv6 parts are pending without ::1.

local helpers = require "spec.helpers"
local ch = require "spec.child_helpers"

local FAKEGAI, WHY = ch.fakegai()
local HAS_V6 = helpers.has_ipv6()

local function need()
  if not FAKEGAI then error(WHY, 2) end
  if not HAS_V6 then pending("no IPv6 loopback (::1) on this machine") end
end

-- On stderr: stdout is busted's (-o json).
local function measured(fmt, ...)
  io.stderr:write("\n[measured] ", fmt:format(...), "\n")
end

-- Child code: setups, and `both(fn)` which runs fn(label) outside run and
-- inside a task and returns { outside = ..., task = ... }, each with the
-- change in the descriptor count (`fds`, after the setup's own were closed).
local LIB = [==[
-- the pool's pipe and the poller are made once per process: make them now
duplex.run(function() duplex.resolve("warm.v4.test") end)

local function free_port()
  local s = assert(duplex.listen("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return port
end

-- 127.0.0.1:P listening (if v4) and [::1]:P a black hole (if hole) or
-- listening (if v6 == "listen") or nothing (refused).
local function setup(opts)
  local env = { closers = {} }
  local function keep(x) env.closers[#env.closers + 1] = x; return x end
  if opts.v4 == "listen" then
    env.v4 = keep(assert(duplex.listen("127.0.0.1", 0)))
    local _, port = env.v4:getsockname()
    env.port = port
  elseif opts.v4 == "hole" then
    env.v4 = keep(assert(duplex.listen("127.0.0.1", 0, { backlog = 0 })))
    local _, port = env.v4:getsockname()
    env.port = port
    keep(assert(duplex.connect("127.0.0.1", port, { timeout = 2 })))
  else
    env.port = free_port()
  end
  if opts.v6 == "hole" then
    keep(assert(duplex.listen("::1", env.port, { backlog = 0, v6only = true })))
    keep(assert(duplex.connect("::1", env.port, { timeout = 2 })))
  elseif opts.v6 == "listen" then
    env.v6 = keep(assert(duplex.listen("::1", env.port, { v6only = true })))
  end
  function env.close()
    for i = #env.closers, 1, -1 do env.closers[i]:close() end
  end
  return env
end

-- One connect to x.v6first.test: { elapsed, ok, peer = {getpeername}, err = {nil, msg, code} }
local function attempt(env, timeout)
  local el, c, msg, code = timed(duplex.connect, "x.v6first.test", env.port, { timeout = timeout })
  local r = { elapsed = el, port = env.port }
  if c then
    r.ok = true
    r.peer = { c:getpeername() }
    r.label = tostring(c)
    c:close()
  else
    r.ok = false
    r.err = { c, msg, code }
  end
  return r
end

local function both(opts, timeout)
  local out = {}
  for _, where in ipairs({ "outside", "task" }) do
    local env = setup(opts)
    local fds0 = fdcount()
    local r
    if where == "outside" then
      r = attempt(env, timeout)
    else
      r = duplex.run(function() return attempt(env, timeout) end)
    end
    r.fds = fdcount() - fds0
    env.close()
    out[where] = r
  end
  return out
end
]==]

local function run(body, env)
  return ch.run(LIB .. body, env or {}, 20)
end

describe("Happy Eyeballs", function()
  it("::1 a black hole, 127.0.0.1 listening: connects to 127.0.0.1 after about 250 ms, not at the timeout", function()
    need()
    local r = run([[ emit(both({ v6 = "hole", v4 = "listen" }, 5)) ]])
    for _, where in ipairs({ "outside", "task" }) do
      local x = r[where]
      measured("black hole then v4 (%s): connected in %.3f s", where, x.elapsed)
      assert.same({ ok = true, peer = { "127.0.0.1", x.port, "inet" }, fds = 0 },
        { ok = x.ok, peer = x.peer, fds = x.fds, err = x.err })
      assert.matches("^duplex%.client %(127%.0%.0%.1:%d+ %-> 127%.0%.0%.1:" .. x.port .. "%)$", x.label)
      assert.is_true(x.elapsed >= 0.2 and x.elapsed < 0.8, where .. ": took " .. x.elapsed)
    end
  end)

  it("nothing on ::1 (refused at once): 127.0.0.1 starts at once", function()
    need()
    local r = run([[ emit(both({ v4 = "listen" }, 5)) ]])
    for _, where in ipairs({ "outside", "task" }) do
      local x = r[where]
      measured("v6 refused then v4 (%s): connected in %.1f ms", where, x.elapsed * 1000)
      assert.same({ ok = true, peer = { "127.0.0.1", x.port, "inet" }, fds = 0 },
        { ok = x.ok, peer = x.peer, fds = x.fds, err = x.err })
      assert.is_true(x.elapsed < 0.2, where .. ": took " .. x.elapsed)   -- not after 250 ms
    end
  end)

  it("::1 listening: the first address (IPv6) wins at once", function()
    need()
    local r = run([[ emit(both({ v6 = "listen", v4 = "listen" }, 5)) ]])
    for _, where in ipairs({ "outside", "task" }) do
      local x = r[where]
      assert.same({ ok = true, peer = { "::1", x.port, "inet6" }, fds = 0 },
        { ok = x.ok, peer = x.peer, fds = x.fds, err = x.err })
      assert.is_true(x.elapsed < 0.2, where .. ": took " .. x.elapsed)
    end
  end)

  it("both refused: the last real error, naming its address", function()
    need()
    local r = run([[ emit(both({}, 5)) ]])
    for _, where in ipairs({ "outside", "task" }) do
      local x = r[where]
      assert.same({
        ok = false, fds = 0,
        err = { nil, "connect 127.0.0.1:" .. x.port .. ": Connection refused", "ECONNREFUSED" },
      }, { ok = x.ok, fds = x.fds, err = x.err, peer = x.peer })
      assert.is_true(x.elapsed < 1, where .. ": took " .. x.elapsed)
    end
  end)

  it("a timeout shorter than 250 ms against the black hole: ETIMEDOUT at the timeout, naming [::1]", function()
    need()
    local r = run([[ emit(both({ v6 = "hole", v4 = "listen" }, 0.15)) ]])
    for _, where in ipairs({ "outside", "task" }) do
      local x = r[where]
      measured("black hole, timeout 0.15 s (%s): ETIMEDOUT after %.3f s", where, x.elapsed)
      assert.same({
        ok = false, fds = 0,
        err = { nil, "connect [::1]:" .. x.port .. ": Connection timed out", "ETIMEDOUT" },
      }, { ok = x.ok, fds = x.fds, err = x.err, peer = x.peer })
      assert.is_true(x.elapsed >= 0.14 and x.elapsed < 0.8, where .. ": took " .. x.elapsed)
    end
  end)

  it("black hole on ::1 and 127.0.0.1 refused: ETIMEDOUT at the deadline; no descriptor left", function()
    need()
    local r = run([[ emit(both({ v6 = "hole" }, 0.6)) ]])
    for _, where in ipairs({ "outside", "task" }) do
      local x = r[where]
      measured("black hole then v4 refused, timeout 0.6 s (%s): %s after %.3f s", where,
        tostring(x.err and x.err[3]), x.elapsed)
      assert.same({ false, nil, "ETIMEDOUT", 0 }, { x.ok, x.err[1], x.err[3], x.fds })
      assert.is_true(x.elapsed >= 0.59 and x.elapsed < 1.5, where .. ": took " .. x.elapsed)
    end
  end)

  it("the message of a deadline names the attempt that timed out, not an earlier refusal", function()
    need()
    -- ::1 refuses at once, 127.0.0.1 is a black hole: the timeout is
    -- 127.0.0.1's, so the message should name it.
    local r = run([[ emit(both({ v4 = "hole" }, 0.5)) ]])
    for _, where in ipairs({ "outside", "task" }) do
      local x = r[where]
      assert.same({
        ok = false, fds = 0,
        err = { nil, "connect 127.0.0.1:" .. x.port .. ": Connection timed out", "ETIMEDOUT" },
      }, { ok = x.ok, fds = x.fds, err = x.err, peer = x.peer })
    end
  end)

  it("other tasks run while a connect waits out the black hole", function()
    need()
    local r = run([[
      local env = setup({ v6 = "hole", v4 = "listen" })
      local fds0 = fdcount()
      local out = duplex.run(function()
        local ticks = 0
        local ticker = duplex.spawn(function()
          for _ = 1, 10000 do ticks = ticks + 1; duplex.sleep(0.005) end
        end)
        local x = attempt(env, 5)
        ticker:cancel()
        x.ticks = ticks
        return x
      end)
      out.fds = fdcount() - fds0
      env.close()
      emit(out)
    ]])
    measured("black hole then v4 in a task: %.3f s, %d ticks of 5 ms meanwhile", r.elapsed, r.ticks)
    assert.same({ true, { "127.0.0.1", r.port, "inet" }, 0 }, { r.ok, r.peer, r.fds })
    assert.is_true(r.ticks >= 10, "only " .. r.ticks .. " ticks")
  end)

  it("a connect that fails before any attempt leaves its attempt list safe to collect", function()
    if not FAKEGAI then error(WHY) end
    -- connect's list of attempts (lx_targets) gets a __gc before the
    -- addresses are known; a failure there (a name that does not resolve,
    -- a Unix path too long, a bind host that does not resolve) must leave a
    -- list the collector can close. Freed memory is filled with 'A's first
    -- so that whatever the list did not set is not zero. (In a child: a
    -- crash must not take busted down.)
    local r = run([[
      local seen = {}
      for round = 1, 20 do
        local junk = {}
        for i = 1, 50 do junk[i] = string.rep("A", 2000 + 8 * i) end
        junk = nil
        collectgarbage()
        for _ = 1, 5 do
          seen[1] = select(3, duplex.connect("bad..name", 1))
          seen[2] = select(3, duplex.connect("unix:/tmp/" .. string.rep("x", 200)))
          seen[3] = select(3, duplex.connect("127.0.0.1", 1, { bind = "bad..name" }))
          seen[4] = select(3, duplex.connect("q.fail.test", 1))
        end
        collectgarbage()
      end
      local fds0 = fdcount()
      duplex.run(function()
        for round = 1, 5 do
          local junk = {}
          for i = 1, 50 do junk[i] = string.rep("A", 2000 + 8 * i) end
          junk = nil
          collectgarbage()
          seen[5] = select(3, duplex.connect("127.0.0.1", 1, { bind = "bad..name" }))
          seen[6] = select(3, duplex.connect("q.fail.test", 1))
          collectgarbage()
        end
      end)
      emit({ codes = seen, fds = fdcount() - fds0 })
    ]])
    assert.same({ codes = { "EAI_NONAME", "ENAMETOOLONG", "EAI_NONAME", "EAI_NONAME", "EAI_NONAME", "EAI_NONAME" },
                  fds = 0 }, r)
  end)

  it("a task cancelled while its connect races the black hole: its attempts are closed", function()
    need()
    local r = run([[
      local env = setup({ v6 = "hole" })     -- nothing on 127.0.0.1: only the hole waits
      local fds0 = fdcount()
      local j = duplex.run(function()
        local t = duplex.spawn(function()
          return duplex.connect("x.v6first.test", env.port, { timeout = 5 })
        end)
        duplex.sleep(0.1)
        t:cancel()
        return { t:join(5) }
      end)
      local fds = fdcount() - fds0         -- fdcount collects garbage first
      env.close()
      emit({ join = j, fds = fds })
    ]])
    assert.same({ join = { false, "canceled" }, fds = 0 }, r)
  end)
end)

-- spec/70-forward_spec.lua: client:forward(dst [, max]) moves a stream from
-- one client to another in C (issue 10): byte for byte in both directions
-- between real peers (python3), over TCP and Unix sockets, through every
-- path (splice for bulk streams, src's buffer for small messages; children
-- with DUPLEX_SPLICE=off and =always force each; spec/shim/nosplice.c a
-- kernel that refuses to splice, so that it falls back); files and pipes
-- (duplex.stream) at either end; the half-close passed on
-- at the end; the count; max; bytes buffered ahead first; the timeout as a
-- limit without progress, with nothing lost; a peer that goes away (no
-- SIGPIPE); several forwards in tasks beside a responsive one; TLS on
-- either side; bad arguments raise. Loopback and port 0 only.

local duplex = require "duplex"
local helpers = require "spec.helpers"
local pack, unpack = helpers.pack, helpers.unpack
local ch = require "spec.child_helpers"
local S = require "spec.forward_scenarios"

local MiB = 1024 * 1024
local defer, run_cleanups = helpers.defer, helpers.run_cleanups

local function all(...) return pack(...) end

-- A child Lua (the one under test) running scenario `name` with env (DUPLEX_SPLICE=mode and
-- the like) and preload (an LD_PRELOAD library, or none).
local function in_child_with(env, preload, name, ...)
  local args = {}
  for i, v in ipairs({ ... }) do   -- (%q makes a string of a number on 5.1)
    args[i] = type(v) == "number" and ("%.17g"):format(v) or ("%q"):format(v)
  end
  local body = ("emit(require('spec.forward_scenarios').%s(%s))"):format(name, table.concat(args, ", "))
  return (ch.run(body, env, 120, { preload = preload }))
end

local function in_child(mode, name, ...)
  return in_child_with({ DUPLEX_SPLICE = mode }, "", name, ...)
end

local function check_roundtrip(r, up, down)
  assert.same({ up }, r.up)
  assert.same({ down }, r.down)
  assert.equal(up, r.client.sent[2])
  assert.same(r.client.sent, r.server.recv)      -- the server saw the end
  assert.equal(down, r.server.sent[2])
  assert.same(r.server.sent, r.client.recv)      -- ...and answered after it
end

describe("client:forward", function()
  after_each(run_cleanups)
  helpers.track_fds()

  describe("between real peers", function()
    it("moves several MiB byte for byte both ways and passes the half-close on #nomemcheck", function()
      check_roundtrip(S.roundtrip(8 * MiB, 5 * MiB, "inet"), 8 * MiB, 5 * MiB)
    end)

    it("does the same over Unix sockets #nomemcheck", function()
      check_roundtrip(S.roundtrip(3 * MiB, 2 * MiB, "unix"), 3 * MiB, 2 * MiB)
    end)

    it("moves small streams (the buffer path) and empty ones", function()
      check_roundtrip(S.roundtrip(1000, 3, "inet"), 1000, 3)
      check_roundtrip(S.roundtrip(0, 0, "inet"), 0, 0)
    end)

    for _, mode in ipairs({ "off", "always" }) do
      it("is byte-exact with DUPLEX_SPLICE=" .. mode .. " #nomemcheck", function()
        check_roundtrip(in_child(mode, "roundtrip", 6 * MiB, 3 * MiB, "inet"), 6 * MiB, 3 * MiB)
        check_roundtrip(in_child(mode, "roundtrip", 2 * MiB, 100, "unix"), 2 * MiB, 100)
      end)
    end

    -- spec/shim/nosplice.c makes the kernel refuse, as gVisor or another
    -- kernel may for some descriptors: each direction falls back once and
    -- then moves every byte through src's buffer.
    for _, case in ipairs({
      { "in", "a splice from src into the pipe fails", "in=2 out=0 pipe=0\n" },
      { "out", "a splice from the pipe into dst fails (the piped bytes go back to the buffer)",
        "in=0 out=2 pipe=0\n" },
      { "pipe", "no pipe can be made", "in=0 out=0 pipe=2\n" },
    }) do
      local mode, why, want = case[1], case[2], case[3]
      it("falls back to the buffer, nothing lost, when " .. why .. " #nomemcheck", function()
        local so = assert(ch.shim("nosplice"))
        local log = os.tmpname()
        defer(function() os.remove(log) end)
        local env = { DUPLEX_SPLICE = "always", NOSPLICE = mode, NOSPLICE_LOG = log }
        check_roundtrip(in_child_with(env, so, "roundtrip", 3 * MiB, 100, "inet"), 3 * MiB, 100)
        assert.equal(want, helpers.slurp(log))
      end)
    end
  end)

  describe("results", function()
    it("returns the count at the end of the stream, after half-closing dst", function()
      local a, b = helpers.deferred_pair()
      local c, d = helpers.deferred_pair()
      assert(a:write("hello world"))
      assert(a:shutdown("w"))
      assert.same({ 11 }, { b:forward(c) })
      assert.equal("hello world", d:read("a"))
      assert.is_nil(d:read("l"))                  -- dst's end arrived
      assert(d:write("still open\n"))             -- the other way still works
      assert.equal("still open", c:read("l"))
      assert.same({ 0 }, { b:forward(c) })        -- again: nothing more
    end)

    it("stops after max bytes without half-closing; max 0 returns at once", function()
      local a, b = helpers.deferred_pair()
      local c, d = helpers.deferred_pair()
      assert(a:write("hello world"))
      assert.same({ 5 }, { b:forward(c, 5) })
      assert.equal("hello", d:read(5))
      assert.same({ 0 }, { b:forward(c, 0) })
      d:settimeout(0.05)
      local r = all(d:read(1))
      assert.same({ nil, "ETIMEDOUT" }, { r[1], r[3] })
      assert(a:shutdown("w"))
      assert.same({ 6 }, { b:forward(c, 100) })   -- the end came first
      assert.equal(" world", d:read("a"))
    end)

    it("forwards the bytes src's buffer holds first", function()
      local a, b = helpers.deferred_pair()
      local c, d = helpers.deferred_pair()
      assert(a:write("line1\nrest of it "))
      assert.equal("line1", b:read("l"))
      assert(a:write("and more"))
      assert(a:shutdown("w"))
      assert.same({ 19 }, { b:forward(c) })
      assert.equal("rest of it and more", d:read("a"))
    end)

    it("with timeout 0 moves what is ready, then EAGAIN with the count", function()
      local a, b = helpers.deferred_pair()
      local c, d = helpers.deferred_pair()
      assert(a:write("abc"))
      b:settimeout(0)
      local deadline = duplex.now() + 5
      local r
      repeat r = all(b:forward(c)) until r[4] ~= 0 or duplex.now() > deadline
      assert.same({ n = 4, nil, r[2], "EAGAIN", 3 }, r)
      assert.matches("^forward 127%.0%.0%.1:%d+: ", r[2])
      assert.equal("abc", d:read(3))
    end)

    it("fails with ETIMEDOUT and the count when nothing moves for src's timeout #timing", function()
      local a, b = helpers.deferred_pair()
      local c, d = helpers.deferred_pair()
      assert(a:write("abc"))
      b:settimeout(0.2)
      local t, r = helpers.timed(function() return all(b:forward(c)) end)
      assert.same({ n = 4, nil, r[2], "ETIMEDOUT", 3 }, r)
      assert.is_true(t >= 0.19 and t < 5, tostring(t))
      assert.equal("abc", d:read(3))
      -- a trickle keeps it going: the limit is per stretch without progress
      duplex.run(function()
        local w = duplex.spawn(function()
          for i = 1, 5 do duplex.sleep(0.1); assert(a:write(tostring(i))) end
          return a:shutdown("w")
        end)
        assert.same({ 5 }, { b:forward(c) })
        assert(w:join(5))
      end)
      assert.equal("12345", d:read("a"))
    end)

    it("loses nothing to a timeout while dst does not read #nomemcheck", function()
      local n = 4 * MiB
      for _, r in ipairs({ S.timeout_no_loss(n), in_child("always", "timeout_no_loss", n),
                           in_child("off", "timeout_no_loss", n) }) do
        assert.same({ nil, r.first[2], "ETIMEDOUT", r.first[4] }, r.first)
        assert.is_true(r.first[4] > 0 and r.first[4] < n, tostring(r.first[4]))
        assert.same({ n - r.first[4] }, r.second)
        assert.same({ true, true, true, n }, { r.wrote, r.read, r.same, r.total })
      end
    end)

    it("reports a destination whose peer went away, with the count and no SIGPIPE", function()
      for _, r in ipairs({ S.peer_gone(8 * MiB), in_child("always", "peer_gone", 8 * MiB),
                           in_child("off", "peer_gone", 8 * MiB) }) do
        assert.equal(1000, r.nread)
        assert.is_nil(r.r[1])
        assert.is_true(r.r[3] == "EPIPE" or r.r[3] == "ECONNRESET", tostring(r.r[3]))
        assert.matches("^forward 127%.0%.0%.1:%d+: ", r.r[2])
        assert.is_true(r.r[4] >= 1000, tostring(r.r[4]))
      end
    end)

    it("fails with EPIPE when dst was shut down for writing", function()
      local a, b = helpers.deferred_pair()
      local c = helpers.deferred_pair()
      assert(c:shutdown("w"))
      assert(a:write("x"))
      local r = all(b:forward(c))
      assert.same({ n = 4, nil, r[2], "EPIPE", 0 }, r)
      assert.equal("x", b:read(1))               -- still src's: not lost
    end)

    it("fails with EPIPE, moving nothing, into a stream another task's write left cut", function()
      local a, b = helpers.deferred_pair()       -- dst a; b does not read yet
      local c, d = helpers.deferred_pair()       -- src d
      local big = S.data(8 * MiB, 3)
      duplex.run(function()
        local cut = duplex.spawn(function()
          a:settimeout(0.2)
          return all(a:write(big))                -- part of it, then ETIMEDOUT: a is cut
        end)
        local _, w = cut:join(10)
        assert.same({ n = 4, nil, w[2], "ETIMEDOUT", w[4] }, w)
        assert.is_true(w[4] > 0 and w[4] < #big, tostring(w[4]))
        assert(c:write("not into the middle"))
        local f = duplex.spawn(function() return all(d:forward(a)) end)
        local _, r = f:join(10)
        assert.same({ n = 4, nil, r[2], "EPIPE", 0 }, r)
        assert.matches("^forward 127%.0%.0%.1:%d+: an earlier write was cut off mid%-message$", r[2])
        assert.equal("not into the middle", d:read(19))   -- still src's: not lost
        b:settimeout(5)
        assert.equal(big:sub(1, w[4]), b:read(w[4]))       -- a's part, and nothing after it
        b:settimeout(0)
        local more = all(b:readsome())
        assert.same({ n = 3, nil, more[2], "EAGAIN" }, more)
      end)
    end)

    it("fails with ECANCELED when another task closes dst", function()
      local _, b = helpers.deferred_pair()
      local c = helpers.deferred_pair()
      duplex.run(function()
        local main = helpers.current()
        duplex.spawn(function() helpers.until_waiting(main, "read"); c:close() end)
        local r = all(b:forward(c))
        assert.same({ n = 4, nil, r[2], "ECANCELED", 0 }, r)
      end)
    end)
  end)

  describe("in tasks", function()
    it("runs several forwards at once while a ping task stays responsive #timing", function()
      local n, chains = 16 * MiB, 3
      duplex.run(function()
        local results, worst, stop = {}, 0, false
        local ping = duplex.spawn(function()
          while not stop do
            local t0 = duplex.now()
            duplex.sleep(0.005)
            worst = math.max(worst, duplex.now() - t0)
          end
        end)
        local tasks = {}
        for i = 1, chains do
          local a, b = helpers.deferred_pair()
          local c, d = helpers.deferred_pair()
          for _, s in ipairs({ a, b, c, d }) do s:settimeout(30) end
          local want = S.data(n, i)
          tasks[#tasks + 1] = duplex.spawn(function() return a:write(want) and a:shutdown("w") and true end)
          tasks[#tasks + 1] = duplex.spawn(function() return b:forward(c) end)
          tasks[#tasks + 1] = duplex.spawn(function()
            local s = d:read("a")
            results[i] = s == want
            return #s
          end)
        end
        for i = 1, #tasks, 3 do
          assert.same({ true, true }, { tasks[i]:join(60) })
          assert.same({ true, n }, { tasks[i + 1]:join(60) })
          assert.same({ true, n }, { tasks[i + 2]:join(60) })
        end
        stop = true
        ping:join(5)
        assert.same({ true, true, true }, results)
        assert.is_true(worst < 1, "a ping waited " .. worst .. " s")
      end)
    end)

    it("makes other readers of src and writers of dst queue behind it", function()
      local a, b = helpers.deferred_pair()
      local c, d = helpers.deferred_pair()
      duplex.run(function()
        local order = {}
        local f = duplex.spawn(function()
          local n = b:forward(c, 8)
          order[#order + 1] = "forward"
          return n
        end)
        helpers.until_waiting(f, "read")
        local w = duplex.spawn(function() assert(c:write("after\n")); order[#order + 1] = "write" end)
        local r = duplex.spawn(function() local s = b:read("l"); order[#order + 1] = "read"; return s end)
        helpers.until_waiting(w, "turn")
        helpers.until_waiting(r, "turn")
        assert.same({}, order)
        assert(a:write("through\nnext line\n"))
        assert.same({ true, 8 }, { f:join(5) })
        assert(w:join(5))
        assert.same({ true, "next line" }, { r:join(5) })
        assert.equal("forward", order[1])
        assert.equal("through\nafter\n", d:read(14))
      end)
    end)

    it("closes its pipe when its task is cancelled", function()
      local a, b = helpers.deferred_pair()
      local c = helpers.deferred_pair()
      duplex.run(function()
        local f = duplex.spawn(function() return b:forward(c) end)
        assert(a:write(S.data(65536, 5)))
        helpers.until_waiting(f)
        f:cancel()
        assert.same({ false, "canceled" }, { f:join(5) })
      end)
    end)

    it("echoes when src and dst are the same client", function()
      local a, b = helpers.deferred_pair()
      assert(a:write("ping"))
      assert(a:shutdown("w"))
      assert.same({ 4 }, { b:forward(b) })
      assert.equal("ping", a:read("a"))
    end)
  end)

  describe("with duplex.stream ends", function()
    -- The child forwards its stdin into a socket and the socket's peer into
    -- its stdout, and writes both counts to a file.
    local CHILD = [[
local duplex = require "duplex"
local input, output = duplex.stream(0), duplex.stream(1)
local up, down
duplex.run(function()
  local srv = assert(duplex.listen("127.0.0.1", 0))
  local _, port = srv:getsockname()
  local a = assert(duplex.connect("127.0.0.1", port, { timeout = 30 }))
  local b = assert(srv:accept(30))
  local t = duplex.spawn(function() return { input:forward(a) } end)
  down = { b:forward(output) }
  up = select(2, t:join(60))
  output:close()
end)
local f = assert(io.open(arg[1], "w"))
f:write(string.format("%s %s %s %s", tostring(up[1]), tostring(up[3]), tostring(down[1]), tostring(down[3])))
f:close()
]]

    for _, mode in ipairs({ "off", "bulk", "always" }) do
      it("moves a file or a pipe through a socket into a file or a pipe (DUPLEX_SPLICE=" .. mode .. ") #nomemcheck", function()
        local dir = helpers.mktemp_dir("fwdstream")
        defer(function() helpers.execute("rm -rf " .. helpers.shquote(dir)) end)
        local q = function(name) return helpers.shquote(dir .. "/" .. name) end
        local want = S.data(3 * MiB + 17, 11)
        local f = assert(io.open(dir .. "/in", "wb"))
        f:write(want)
        f:close()
        f = assert(io.open(dir .. "/child.lua", "w"))
        f:write(CHILD)
        f:close()
        local run = ("DUPLEX_SPLICE=%s timeout 60 %s %s %s"):format(mode, helpers.lua, q("child.lua"), q("counts"))
        for _, shape in ipairs({ "%s < %s > %s", "cat %s | %s | cat > %s" }) do
          local cmd = shape == "%s < %s > %s" and shape:format(run, q("in"), q("out"))
            or shape:format(q("in"), run, q("out"))
          assert.is_true(helpers.execute(cmd), cmd)
          assert.equal(string.format("%d nil %d nil", #want, #want), helpers.slurp(dir .. "/counts"))
          assert.is_true(helpers.slurp(dir .. "/out") == want, "the bytes differ: " .. cmd)
        end
      end)
    end
  end)

  describe("with TLS", function()
    local ok_pki, pki = pcall(require, "spec.tls_pki")
    if not (duplex.tls and ok_pki) then
      pending("duplex was built without TLS")
      return
    end

    -- the resolver's pipe and OpenSSL's state are made once per process
    pcall(duplex.run, function()
      local c, p, srv = pki.pair()
      pki.close(c, p, srv)
    end)

    it("decrypts from a TLS source and encrypts into a TLS destination", function()
      local c, d = helpers.deferred_pair()        -- plain
      local want = S.data(3 * MiB, 9)
      duplex.run(function()
        local ta, tb, tsrv = pki.pair()           -- TLS: ta -> tb
        local tc, td, tsrv2 = pki.pair()          -- TLS: tc -> td
        defer(function() pki.close(ta, tb, tsrv); pki.close(tc, td, tsrv2) end)
        for _, s in ipairs({ ta, tb, tc, td }) do s:settimeout(30) end
        local w = duplex.spawn(function() return ta:write(want) and ta:shutdown("w") and true end)
        local f1 = duplex.spawn(function() return tb:forward(c) end)     -- TLS -> plain
        local f2 = duplex.spawn(function() return d:forward(tc) end)     -- plain -> TLS
        local got = td:read("a")
        assert.same({ true, true }, { w:join(30) })
        assert.same({ true, #want }, { f1:join(30) })
        assert.same({ true, #want }, { f2:join(30) })
        assert.is_true(got == want, "bytes differ")
        assert.is_nil(td:read("l"))              -- close_notify passed on
      end)
    end)

    -- OpenSSL takes a record it could not finish sending and must be
    -- given the same bytes again: a forward that stops there (timeout,
    -- cancel) leaves dst cut, as a write does (spec/62's cut-write rule).
    -- Another task's write then fails with EPIPE instead of going out in
    -- the record's place; the same task forwarding again finishes it.
    it("leaves a TLS destination cut while OpenSSL holds a record of it: other writers get EPIPE, the same task mends it #nomemcheck", function()
      local c, d = helpers.deferred_pair()        -- plain src: c -> d
      local want = S.data(32 * MiB, 11)
      duplex.run(function()
        local ta, tb, tsrv = pki.pair()           -- TLS dst ta; its peer tb does not read yet
        defer(function() pki.close(ta, tb, tsrv) end)
        for _, s in ipairs({ c, ta, tb }) do s:settimeout(30) end
        local res, go = {}, false
        duplex.spawn(function() return c:write(want) end)
        local f = duplex.spawn(function()
          d:settimeout(0.3)
          res.f1 = all(d:forward(ta))             -- no progress for 0.3 s
          while not go do duplex.sleep(0.01) end
          d:settimeout(30)
          res.f2 = all(d:forward(ta, #want - res.f1[4]))   -- the held record first, then the rest
        end)
        while not res.f1 do duplex.sleep(0.01) end
        local b = duplex.spawn(function() return all(ta:write("B")) end)
        res.b1 = select(2, b:join(5))
        res.m1 = all(ta:write("M"))               -- run's main task is another task too
        local rd = duplex.spawn(function() return tb:read(#want + 1) end)
        go = true
        f:join(30)
        res.b2 = all(ta:write("B"))
        local _, got = rd:join(30)
        local n = res.f1[4]
        assert.same({ n = 4, nil, res.f1[2], "ETIMEDOUT", n }, res.f1)
        assert.is_true(n < #want, tostring(n))
        for _, r in ipairs({ res.b1, res.m1 }) do
          assert.same({ n = 4, nil, r[2], "EPIPE", 0 }, r)
          assert.matches("^write .*cut off mid%-message$", r[2])
        end
        assert.same({ n = 1, #want - n }, res.f2)
        assert.same({ n = 1, ta }, res.b2)
        assert.equal(#want + 1, #got)
        assert.is_true(got == want .. "B", "the peer's bytes differ from what was reported sent")
      end)
    end)
  end)

  describe("arguments", function()
    it("raise for a wrong destination or max; a closed socket is EBADF", function()
      local a, b, srv = helpers.deferred_pair()
      local u = assert(duplex.udp("127.0.0.1", 0))
      defer(function() u:close() end)
      local function err(...) local ok, e = pcall(...); assert.is_false(ok); return e end
      assert.matches("bad argument #2 to '[%w?]*' %(duplex.client expected, got no value%)", err(b.forward, b))
      assert.matches("bad argument #2 to '[%w?]*' %(duplex.client expected, got duplex.udp%)", err(b.forward, b, u))
      assert.matches("bad argument #2 to '[%w?]*' %(duplex.client expected, got duplex.server%)", err(b.forward, b, srv))
      assert.matches("bad argument #1 to '[%w?]*' %(duplex.client expected, got duplex.udp%)", err(b.forward, u, b))
      assert.matches("bad argument #3 to '[%w?]*' %(maximum must be non%-negative%)", err(b.forward, b, a, -1))
      assert.matches("bad argument #3 to '[%w?]*' %(number has no integer representation%)", err(b.forward, b, a, 1.5))
      local x, y = helpers.deferred_pair()
      y:close()
      assert.same({ nil, "EBADF", 0 }, { b:forward(y), select(3, b:forward(y)) })
      assert.same({ nil, "EBADF", 0 }, { y:forward(x), select(3, y:forward(x)) })
    end)
  end)
end)

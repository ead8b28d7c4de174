-- spec/31-concurrency_spec.lua: socket calls inside duplex.run tasks:
-- the same results as outside, full duplex from two tasks, whole writes and
-- whole lines when tasks share a client, close waking every waiter,
-- server:serve, fairness under a flood, descriptors above 1024, and 10,000
-- concurrent connections in one process.
-- Loopback and port 0 only; every loop is bounded in count and time.

local duplex = require "duplex"
local helpers = require "spec.helpers"
local pack, unpack = helpers.pack, helpers.unpack

local KiB, MiB = 1024, 1024 * 1024

-- Cleanups for the running test (see helpers.defer).
local defer, run_cleanups = helpers.defer, helpers.run_cleanups

local pair = helpers.deferred_pair

-- Collect onerror reports ({ err =, traceback = }) for this test.
local function collect_errors()
  local reports = {}
  local old = duplex.onerror(function(err, traceback)
    reports[#reports + 1] = { err = err, traceback = traceback }
  end)
  defer(function() duplex.onerror(old) end)
  return reports
end

-- The soft limit on open descriptors, as the shell reports it.
local function nofile_limit()
  local p = io.popen("ulimit -n")
  local s = p and p:read("*l")
  if p then p:close() end
  if s == "unlimited" then return math.huge end
  return tonumber(s) or 0
end

-- A port on 127.0.0.1 where nothing listens (it did a moment ago).
local function dead_port()
  local srv, port = helpers.server()
  srv:close()
  return port
end

-- Echo handler for serve(): everything received goes back.
local function echo(c)
  c:settimeout(30)
  for _ = 1, 1e7 do
    local s = c:readsome()
    if not s then return end
    local ok, msg = c:write(s)
    if not ok then error(msg) end
  end
end

-- Run fn once outside duplex.run and once as a task (with another task
-- ticking meanwhile, which shows the task's waits let others run); returns
-- outside, inside, ticks (results packed).
local function both_ways(fn)
  local outside = pack(fn())
  local inside, ticks = duplex.run(function()
    local ticks, stop = 0, false
    local ticker = duplex.spawn(function()
      for _ = 1, 500 do
        if stop then return end
        duplex.sleep(0.005)
        ticks = ticks + 1
      end
    end)
    local r = pack(fn())
    stop = true
    ticker:join(1)
    return r, ticks
  end)
  return outside, inside, ticks
end

describe("blocking calls inside tasks", function()
  after_each(run_cleanups)
  helpers.track_fds()

  it("read 'l' with settimeout(0.1): nil, msg, 'ETIMEDOUT' and the partial line stays buffered", function()
    local c, p = pair()
    local n = 0
    local function scenario()
      n = n + 1
      local part = "partial " .. n
      assert(c:write(part))
      p:settimeout(0.1)
      local elapsed, line, msg, code = helpers.timed(function() return p:read("l") end)
      assert(c:write(" rest\n"))
      p:settimeout(5)
      local whole = p:read("l")
      return line, type(msg), code, elapsed >= 0.09 and elapsed < 1, whole == part .. " rest", msg
    end
    local outside, inside, ticks = both_ways(scenario)
    assert.same({ n = 6, nil, "string", "ETIMEDOUT", true, true, outside[6] }, outside)
    assert.same({ n = 6, nil, "string", "ETIMEDOUT", true, true, inside[6] }, inside)
    assert.matches("read", inside[6], 1, true)
    assert.equal(outside[6], inside[6])
    assert.is_true(ticks >= 5, "other tasks did not run while the read waited: " .. ticks)
  end)

  it("timeout 0 gives nil, msg, 'EAGAIN' at once", function()
    local _, p, srv = pair()
    local outside, inside = both_ways(function()
      p:settimeout(0)
      local r1 = pack(p:read("l"))
      local r2 = pack(srv:accept(0))
      p:settimeout(5)
      return r1[1], r1[3], r2[1], r2[3]
    end)
    assert.same({ n = 4, nil, "EAGAIN", nil, "EAGAIN" }, outside)
    assert.same(outside, inside)
  end)

  it("accept(0.05) gives nil, msg, 'ETIMEDOUT'", function()
    local srv = helpers.server()
    defer(function() srv:close() end)
    local outside, inside, ticks = both_ways(function()
      local elapsed, a, msg, code = helpers.timed(function() return srv:accept(0.05) end)
      return a, type(msg), code, elapsed >= 0.045 and elapsed < 1
    end)
    assert.same({ n = 4, nil, "string", "ETIMEDOUT", true }, outside)
    assert.same(outside, inside)
    assert.is_true(ticks >= 3, "other tasks did not run while accept waited: " .. ticks)
  end)

  it("connect to a closed port gives nil, 'connect 127.0.0.1:PORT: ...', 'ECONNREFUSED'", function()
    local port = dead_port()
    local outside, inside = both_ways(function()
      return duplex.connect("127.0.0.1", port, { timeout = 2 })
    end)
    assert.equal(3, outside.n)
    assert.is_nil(outside[1])
    assert.matches("connect 127.0.0.1:" .. port, outside[2], 1, true)
    assert.equal("ECONNREFUSED", outside[3])
    assert.same(outside, inside)
  end)

  it("write to a peer that never reads times out with nil, msg, 'ETIMEDOUT', nwritten #timing", function()
    local function scenario()
      local c, p = pair()
      c:setoption("sndbuf", 8 * KiB)
      p:setoption("rcvbuf", 8 * KiB)
      c:settimeout(0.1)
      local elapsed, r, msg, code, nw = helpers.timed(function()
        return c:write(string.rep("w", 8 * MiB))
      end)
      return r, type(msg), code, helpers.mathtype(nw), nw > 0 and nw < 8 * MiB, elapsed >= 0.09 and elapsed < 1
    end
    local outside, inside = both_ways(scenario)
    assert.same({ n = 6, nil, "string", "ETIMEDOUT", "integer", true, true }, outside)
    assert.same(outside, inside)
  end)

  it("connect, accept, read and write that wait give the data through", function()
    local own = helpers.scope(); finally(own.close)
    local r = duplex.run(function()
      local srv, port = helpers.server()
      local accepted
      local server_side = duplex.spawn(function()
        local conn = own(assert(srv:accept(5)))
        conn:settimeout(5)
        accepted = conn
        local line = conn:read("l")
        assert(conn:write("got ", line, "\n"))
        conn:close()                   -- the client reads EOF next
        return line
      end)
      helpers.until_waiting(server_side, "read", srv)       -- accept is waiting now
      local c = own(assert(duplex.connect("127.0.0.1", port, { timeout = 5 })))
      c:settimeout(5)
      local conn = helpers.wait_until(function() return accepted end)
      helpers.until_waiting(server_side, "read", conn)      -- the server's read is waiting now
      assert(c:write("ping\n"))
      local reply = pack(c:read("l"))
      local joined = pack(server_side:join(5))
      local eof = pack(c:read("l"))
      srv:close()
      return { reply = reply, joined = joined, eof = eof }
    end)
    assert.same({ n = 1, "got ping" }, r.reply)
    assert.same({ n = 2, true, "ping" }, r.joined)
    assert.same({ n = 1, nil }, r.eof)
  end)
end)

describe("tasks sharing a client", function()
  after_each(run_cleanups)
  helpers.track_fds()

  it("two tasks make it full duplex: 8 MiB written while the 8 MiB echo is read", function()
    local own = helpers.scope(); finally(own.close)
    local reports = collect_errors()
    -- 8 MiB of distinct 64 KiB blocks, so a reordering would show
    local blocks = {}
    for i = 1, 128 do
      local head = string.format("[block %03d]", i)
      blocks[i] = head .. string.rep(string.char(97 + i % 26), 64 * KiB - #head)
    end
    local data = table.concat(blocks)
    assert.equal(8 * MiB, #data)
    local elapsed, r = helpers.timed(function()
      return duplex.run(function()
        local srv, port = helpers.server()
        local serving = duplex.spawn(function() return srv:serve(echo) end)
        local c = own(assert(duplex.connect("127.0.0.1", port, { timeout = 5 })))
        c:settimeout(20)
        local writer = duplex.spawn(function()
          for i = 1, #blocks do
            local ok, msg, code, nw = c:write(blocks[i])
            if not ok then return false, msg, code, nw end
          end
          return c:shutdown("w")
        end)
        local reader = duplex.spawn(function()
          local parts, got = {}, 0
          for _ = 1, 1e6 do
            local s, msg, code = c:readsome()
            if not s then
              if msg then return nil, msg, code end
              break
            end
            parts[#parts + 1] = s
            got = got + #s
          end
          return table.concat(parts)
        end)
        local w = pack(writer:join(30))
        w.type = duplex.type(w[2])
        local rd = pack(reader:join(30))
        srv:close()
        local s = pack(serving:join(5))
        return { w = w, rd = rd, s = s }
      end)
    end)
    assert.same({ n = 2, true, r.w[2], type = "client" }, r.w)
    assert.equal(2, r.rd.n)
    assert.is_true(r.rd[1])
    assert.equal(#data, #r.rd[2])
    assert.is_true(data == r.rd[2], "the echo differs from what was sent")
    assert.same({ n = 2, true, true }, r.s)
    assert.same({}, reports)
    assert.is_true(elapsed < 30, "took " .. elapsed)
  end)

  it("writes from several tasks arrive whole, never interleaved (20 x 200 KiB)", function()
    local c, p = pair()
    c:setoption("sndbuf", 16 * KiB)     -- many partial writes per record
    local size, ntasks = 200 * KiB, 20
    local r = duplex.run(function()
      local writers = {}
      for i = 1, ntasks do
        local letter = string.char(64 + i)
        writers[i] = duplex.spawn(function()
          c:settimeout(20)
          return c:write(string.rep(letter, size / 2), string.rep(letter, size / 2))
        end)
      end
      local reader = duplex.spawn(function()
        for i = 1, ntasks do helpers.until_waiting(writers[i]) end   -- the socket full, the rest queued
        local records = {}
        for i = 1, ntasks do
          local rec, msg, code = p:read(size)
          if not rec then return nil, msg, code, i end
          records[i] = rec
        end
        return records
      end)
      local res = {}
      for i = 1, ntasks do res[i] = pack(writers[i]:join(30)) end
      return { writers = res, reader = pack(reader:join(30)) }
    end)
    for i = 1, ntasks do
      assert.same({ n = 2, true, c }, r.writers[i], "writer " .. i)
    end
    assert.equal(2, r.reader.n, tostring(r.reader[3]))
    assert.is_true(r.reader[1])
    local seen = {}
    for i, rec in ipairs(r.reader[2]) do
      local letter = rec:sub(1, 1)
      assert.is_true(rec == string.rep(letter, size),
        "record " .. i .. " is not homogeneous (interleaved writes)")
      assert.is_nil(seen[letter], "letter " .. letter .. " twice")
      seen[letter] = true
    end
    assert.equal(ntasks, #r.reader[2])
    for i = 1, ntasks do assert.is_true(seen[string.char(64 + i)]) end
    -- nothing more was sent
    p:settimeout(0)
    local extra, _, code = p:read(1)
    assert.is_nil(extra)
    assert.equal("EAGAIN", code)
  end)

  it("several readers each get whole lines", function()
    local c, p = pair()
    local nlines, nreaders = 2000, 4
    local function line_of(i) return string.format("line %05d %s", i, string.rep("x", (i * 37) % 300)) end
    local lines = {}
    for i = 1, nlines do lines[i] = line_of(i) end
    local text = table.concat(lines, "\n") .. "\n"
    local r = duplex.run(function()
      local readers = {}
      for k = 1, nreaders do
        readers[k] = duplex.spawn(function()
          local got = {}
          p:settimeout(10)
          for _ = 1, nlines + 1 do
            local line, msg, code = p:read("l")
            if line == nil then
              if msg then return nil, msg, code end
              return got
            end
            got[#got + 1] = line
          end
          return got
        end)
      end
      local writer = duplex.spawn(function()
        -- fragments of 997 bytes: most lines are cut between two writes
        local pos, chunks = 1, 0
        while pos <= #text and chunks < 10000 do
          assert(c:write(text:sub(pos, pos + 996)))
          pos = pos + 997
          chunks = chunks + 1
          coroutine.yield()
        end
        return c:shutdown("w")
      end)
      local res = {}
      for k = 1, nreaders do res[k] = pack(readers[k]:join(30)) end
      return { readers = res, writer = pack(writer:join(30)) }
    end)
    assert.same({ n = 2, true, c }, r.writer)
    local all = {}
    for k = 1, nreaders do
      assert.equal(2, r.readers[k].n, "reader " .. k .. ": " .. tostring(r.readers[k][3]))
      assert.is_true(r.readers[k][1])
      for _, line in ipairs(r.readers[k][2]) do
        local i = tonumber(line:match("^line (%d%d%d%d%d) "))
        assert.is_truthy(i, "not a whole line: " .. line:sub(1, 40))
        assert.equal(line_of(i), line, "line " .. tostring(i) .. " arrived cut")
        all[#all + 1] = i
      end
    end
    table.sort(all)
    assert.equal(nlines, #all)
    for i = 1, nlines do assert.equal(i, all[i]) end
  end)

  it("readers queued behind one that times out or is cancelled get their turn", function()
    local c, p = pair()
    local r = duplex.run(function()
      p:settimeout(0.05)
      local head = duplex.spawn(function() return p:read("l") end)
      helpers.until_waiting(head, "read")
      p:settimeout(5)                   -- the readers behind it wait up to 5 s
      local second = duplex.spawn(function() return p:read("l") end)
      local third = duplex.spawn(function() return p:read("l") end)
      local fourth = duplex.spawn(function() return p:read("l") end)
      helpers.until_waiting(second, "read")   -- head timed out; second is first in line now
      local head_res = pack(head:join(1))
      third:cancel()                    -- cancel one in the middle of the line
      assert(c:write("for second\n"))
      local second_res = pack(second:join(5))
      assert(c:write("for fourth\n"))
      local fourth_res = pack(fourth:join(5))
      second = duplex.spawn(function() return p:read("l") end)
      helpers.until_waiting(second, "read")
      second:cancel()                   -- cancel the one at the head of the line
      local last = duplex.spawn(function() return p:read("l") end)
      helpers.until_waiting(last, "read")
      assert(c:write("for last\n"))
      return { head = head_res, second = second_res, third = pack(third:join(1)),
               fourth = fourth_res, cancelled = pack(second:join(1)),
               last = pack(last:join(5)) }
    end)
    assert.equal(4, r.head.n)
    assert.is_true(r.head[1])
    assert.is_nil(r.head[2])
    assert.equal("ETIMEDOUT", r.head[4])
    assert.same({ n = 2, true, "for second" }, r.second)
    assert.same({ n = 2, false, "canceled" }, r.third)
    assert.same({ n = 2, true, "for fourth" }, r.fourth)
    assert.same({ n = 2, false, "canceled" }, r.cancelled)
    assert.same({ n = 2, true, "for last" }, r.last)
  end)

  it("a writer queued behind a writer cancelled mid-message fails with EPIPE, never lands inside it", function()
    local c, p = pair()
    c:setoption("sndbuf", 4 * KiB)
    p:setoption("rcvbuf", 4 * KiB)
    local r = duplex.run(function()
      local big = duplex.spawn(function() return c:write(string.rep("b", 8 * MiB)) end)
      local small = duplex.spawn(function() return c:write("small\n") end)
      helpers.until_waiting(big, "write")      -- big blocks (p does not read),
      helpers.until_waiting(small, "turn")     -- small waits its turn
      local before = pack(small:join(0))
      big:cancel()
      local after = pack(small:join(5))
      -- what reaches the peer is big's cut-off bytes and nothing else
      c:shutdown("w")
      local reader = duplex.spawn(function()
        local s, msg, code = p:read("a")
        if s then return #s, (s:find("[^b]")) end
        return nil, msg, code
      end)
      return { before = before, big = pack(big:join(1)), small = after,
               later = pack(c:write("later\n")), reader = pack(reader:join(5)) }
    end)
    assert.same({ n = 3, nil, "join: timed out", "ETIMEDOUT" }, r.before)
    assert.same({ n = 2, false, "canceled" }, r.big)
    local cut = "^write 127%.0%.0%.1:%d+: an earlier write was cut off mid%-message$"
    assert.equal(true, r.small[1])
    assert.same({ nil, "EPIPE", 0 }, { r.small[2], r.small[4], r.small[5] })
    assert.matches(cut, r.small[3])
    -- the cut of a cancelled task stays: nobody can complete its message
    assert.same({ nil, "EPIPE", 0 }, { r.later[1], r.later[3], r.later[4] })
    assert.matches(cut, r.later[2])
    assert.equal(true, r.reader[1])
    assert.is_true(r.reader[2] > 0 and r.reader[2] < 8 * MiB, "big wrote " .. tostring(r.reader[2]))
    assert.is_nil(r.reader[3], "a byte not from big reached the peer")
  end)

  it("closing the client wakes every task waiting on it at once with nil, msg, 'ECANCELED'", function()
    local c, p = pair()
    p:setoption("sndbuf", 4 * KiB)
    c:setoption("rcvbuf", 4 * KiB)      -- c never reads: p's writer blocks
    local r = duplex.run(function()
      local finished = {}
      local function waiter(name, fn)
        return duplex.spawn(function()
          local res = pack(fn())
          finished[name] = duplex.now()
          return res
        end)
      end
      p:settimeout(10)
      local reader = waiter("reader", function() return p:read("l") end)
      local reader2 = waiter("reader2", function() return p:read(10) end)
      local writer = waiter("writer", function() return p:write(string.rep("w", 16 * MiB)) end)
      local writer2 = waiter("writer2", function() return p:write("queued\n") end)
      helpers.until_waiting(reader, "read")    -- all four wait now
      helpers.until_waiting(reader2, "turn")
      helpers.until_waiting(writer, "write")
      helpers.until_waiting(writer2, "turn")
      local still = next(finished) == nil
      local t_close = duplex.now()
      local closed = pack(p:close())
      local res = {}
      for name, t in pairs { reader = reader, reader2 = reader2, writer = writer, writer2 = writer2 } do
        local ok, v = t:join(5)
        res[name] = ok and v or { n = 0, "join failed: " .. tostring(v) }
      end
      local delay = 0
      for _, when in pairs(finished) do delay = math.max(delay, when - t_close) end
      return { still = still, closed = closed, res = res, delay = delay }
    end)
    assert.is_true(r.still, "a task finished before the close")
    assert.same({ n = 1, true }, r.closed)
    for _, name in ipairs { "reader", "reader2" } do
      local res = r.res[name]
      assert.equal(3, res.n, name)
      assert.is_nil(res[1], name)
      assert.is_string(res[2], name)
      assert.matches("read", res[2], 1, true)
      assert.equal("ECANCELED", res[3], name)
    end
    for _, name in ipairs { "writer", "writer2" } do
      local res = r.res[name]
      assert.equal(4, res.n, name)
      assert.is_nil(res[1], name)
      assert.is_string(res[2], name)
      assert.matches("write", res[2], 1, true)
      assert.equal("ECANCELED", res[3], name)
      assert.equal("integer", helpers.mathtype(res[4]), name)
    end
    assert.is_true(r.res.writer[4] < 16 * MiB)
    assert.equal(0, r.res.writer2[4])
    assert.is_true(r.delay < 1, "the waiters woke " .. r.delay .. " s after the close")   -- not at 10 s
  end)
end)

describe("server:serve", function()
  after_each(run_cleanups)
  helpers.track_fds()

  it("returns true when the server is closed", function()
    local r = duplex.run(function()
      local srv = helpers.server()
      local t = duplex.spawn(function() return srv:serve(function() end) end)
      helpers.until_waiting(t, "read", srv)
      local before = pack(t:join(0))
      srv:close()
      local elapsed, ok, v = helpers.timed(function() return t:join(2) end)
      return { before = before, after = pack(ok, v), elapsed = elapsed }
    end)
    assert.same({ n = 3, nil, "join: timed out", "ETIMEDOUT" }, r.before)
    assert.same({ n = 2, true, true }, r.after)
    assert.is_true(r.elapsed < 0.5, "serve returned " .. r.elapsed .. " s after the close")
  end)

  it("returns true to run's main task too", function()
    local r = pack(duplex.run(function()
      local srv = helpers.server()
      duplex.spawn(function() duplex.sleep(0.02); srv:close() end)
      return srv:serve(function() end)
    end))
    assert.same({ n = 1, true }, r)
  end)

  it("runs a task per connection, closes the client when the handler returns or raises, and goes on after an error", function()
    local reports = collect_errors()
    local r = duplex.run(function()
      local srv, port = helpers.server()
      local conns = {}                  -- handler's client by the peer's port
      local serving = duplex.spawn(function()
        return srv:serve(function(conn)
          local _, peer_port = conn:getpeername()
          conns[peer_port] = conn
          conn:settimeout(5)
          local line = conn:read("l")
          if line == "boom" then error("handler boom") end
          if line == nil then return "eof" end
          assert(conn:write("echo ", line, "\n"))
          return "ignored"
        end)
      end)
      local function client()
        local c = assert(duplex.connect("127.0.0.1", port, { timeout = 5 }))
        c:settimeout(5)
        local _, my_port = c:getsockname()
        return c, my_port
      end
      -- an idle connection: its handler waits, the others are served meanwhile
      local idle, idle_port = client()
      local a, a_port = client()
      assert(a:write("boom\n"))
      local a_res = pack(a:read("l"))
      local b, b_port = client()
      assert(b:write("hi\n"))
      local b_res = pack(b:read("l"))
      local b_eof = pack(b:read("l"))
      local types = {
        idle = duplex.type(conns[idle_port]),
        a = duplex.type(conns[a_port]),
        b = duplex.type(conns[b_port]),
      }
      idle:close()
      local idle_closed
      for _ = 1, 200 do                -- its handler sees EOF and returns
        idle_closed = duplex.type(conns[idle_port])
        if idle_closed == "closed client" then break end
        duplex.sleep(0.005)
      end
      a:close(); b:close()
      srv:close()
      return { a = a_res, b = b_res, b_eof = b_eof, types = types,
               idle_closed = idle_closed, serving = pack(serving:join(5)) }
    end)
    assert.same({ n = 1, nil }, r.a)       -- closed by the failed handler
    assert.same({ n = 1, "echo hi" }, r.b)
    assert.same({ n = 1, nil }, r.b_eof)   -- closed when the handler returned
    assert.same({ idle = "client", a = "closed client", b = "closed client" }, r.types)
    assert.equal("closed client", r.idle_closed)
    assert.same({ n = 2, true, true }, r.serving)
    assert.equal(1, #reports)
    assert.is_string(reports[1].err)
    assert.matches("handler boom", reports[1].err, 1, true)
    assert.is_string(reports[1].traceback)
    assert.matches("traceback", reports[1].traceback, 1, true)
  end)
end)

describe("fairness", function()
  after_each(run_cleanups)
  helpers.track_fds()

  it("a client that always has data cannot starve the other tasks", function()
    local srv, port = helpers.server()
    defer(function() srv:close() end)
    -- a child process floods the connection for at most 20 s
    local script = string.format([[
      local duplex = require "duplex"
      local c = assert(duplex.connect("127.0.0.1", %d, { timeout = 5 }))
      c:settimeout(10)
      local chunk = string.rep("f", 65536)
      local deadline = duplex.now() + 20
      while duplex.now() < deadline do
        if not c:write(chunk) then break end
      end
      c:close()
    ]], port)
    local proc = helpers.spawn_process(helpers.lua .. " -e " .. helpers.shquote(script))
    defer(function() proc:close() end)
    local p = assert(srv:accept(5))
    defer(function() p:close() end)   -- runs before proc:close (LIFO)
    p:settimeout(5)
    local r = duplex.run(function()
      local stop, bytes = false, 0
      local reader = duplex.spawn(function()
        local t_end = duplex.now() + 5
        for _ = 1, 1e8 do
          if stop or duplex.now() > t_end then break end
          local s = p:read(64)           -- small reads: the buffer is rarely empty
          if not s then break end
          bytes = bytes + #s
        end
      end)
      helpers.wait_until(function() return bytes > 0 end)   -- the flood is on
      local before = bytes
      local t0 = duplex.now()
      local sleeper = duplex.spawn(function()
        duplex.sleep(0.05)
        return duplex.now()
      end)
      local ok, woke = sleeper:join(10)
      stop = true
      reader:join(10)
      return { ok = ok, elapsed = woke - t0, before = before, bytes = bytes }
    end)
    assert.is_true(r.ok)
    assert.is_true(r.before > 0, "the flood did not start")
    assert.is_true(r.bytes > r.before, "the reader made no progress")
    assert.is_true(r.elapsed >= 0.045, "sleep returned early: " .. r.elapsed)
    assert.is_true(r.elapsed < 0.5, "sleep(0.05) took " .. r.elapsed .. " s beside the flood")
  end)
end)

describe("many descriptors", function()
  after_each(run_cleanups)
  helpers.track_fds()

  it("descriptors above 1024 work, outside and inside run", function()
    local limit = nofile_limit()
    if limit < 2100 then
      pending("the soft RLIMIT_NOFILE is " .. limit .. " (< 2100): cannot open descriptors above 1024")
      return
    end
    -- push the next descriptors above 1024 with files
    local fillers = {}
    defer(function() for _, f in ipairs(fillers) do f:close() end end)
    for _ = 1, 1100 do fillers[#fillers + 1] = assert(io.open("/dev/null")) end
    local srv, port = helpers.server()
    defer(function() srv:close() end)
    assert.is_true(srv:fileno() > 1024, "server fd " .. srv:fileno())
    local c = assert(duplex.connect("127.0.0.1", port, { timeout = 5 }))
    defer(function() c:close() end)
    local p = assert(srv:accept(5))
    defer(function() p:close() end)
    assert.is_true(c:fileno() > 1024 and p:fileno() > 1024)
    -- outside run: waits poll these descriptors
    p:settimeout(0.05)
    local line, _, code = p:read("l")
    assert.is_nil(line)
    assert.equal("ETIMEDOUT", code)
    assert(c:write("out\n"))
    p:settimeout(5)
    assert.equal("out", p:read("l"))
    -- inside run: 200 more pairs, every reader waiting at once
    local r = duplex.run(function()
      local pairs_, tasks = {}, {}
      for i = 1, 200 do
        local cc = assert(duplex.connect("127.0.0.1", port, { timeout = 5 }))
        local pp = assert(srv:accept(5))
        pairs_[i] = { cc, pp }
        pp:settimeout(5)
        tasks[i] = duplex.spawn(function() return pp:read("l") end)
      end
      for i = 1, 200 do helpers.until_waiting(tasks[i], "read") end
      local maxfd = 0
      for i, pr in ipairs(pairs_) do
        maxfd = math.max(maxfd, pr[1]:fileno(), pr[2]:fileno())
        assert(pr[1]:write("in ", i, "\n"))
      end
      local got = {}
      for i = 1, #tasks do got[i] = pack(tasks[i]:join(5)) end
      for _, pr in ipairs(pairs_) do pr[1]:close(); pr[2]:close() end
      return { got = got, maxfd = maxfd }
    end)
    assert.is_true(r.maxfd > 1424, "max fd " .. r.maxfd)
    for i = 1, 200 do assert.same({ n = 2, true, "in " .. i }, r.got[i]) end
  end)

  it("10,000 concurrent connections in one process: each sends a line and gets it back", function()
    local own = helpers.scope(); finally(own.close)
    local N = 10000
    local limit = nofile_limit()
    local in_process = limit >= 2 * N + 200
    if not in_process and limit < N + 200 then
      pending(string.format("the soft RLIMIT_NOFILE is %s: 10,000 connections need %d "
        .. "descriptors (%d with the echo server in the same process)",
        tostring(limit), N + 200, 2 * N + 200))
      return
    end
    local base_fds = helpers.fdcount()
    local port, srv
    if in_process then
      srv, port = helpers.server({ backlog = 4096 })
      defer(function() srv:close() end)
    else
      -- Not enough descriptors for both ends here (and raising the hard limit,
      -- e.g. with prlimit, needs CAP_SYS_RESOURCE): the echo server, a duplex
      -- serve() as well, runs in a child process with the same limit, and this
      -- process holds the 10,000 client connections.
      local script = [[
        local duplex = require "duplex"
        duplex.onerror(function() end)
        duplex.run(function()
          local srv = assert(duplex.listen("127.0.0.1", 0, { backlog = 4096 }))
          local _, port = srv:getsockname()
          io.stdout:write(port, "\n")
          io.stdout:flush()
          duplex.spawn(function() duplex.sleep(90); srv:close() end)
          srv:serve(function(c)
            c:settimeout(60)
            local line = c:read("l")     -- (not c:lines(): PUC 5.1 cannot wait in an iterator)
            while line do
              assert(c:write(line, "\n"))
              line = c:read("l")
            end
          end)
        end)
      ]]
      local proc = helpers.spawn_process(helpers.lua .. " -e " .. helpers.shquote(script))
      defer(function() proc:close() end)
      port = helpers.tointeger(tonumber(proc:read("l")))
      assert.is_truthy(port, "the echo server child did not start")
    end
    local reports = collect_errors()
    local elapsed, r = helpers.timed(function()
      return duplex.run(function()
        local deadline = duplex.now() + 50
        local serving, accepted = nil, 0
        if in_process then
          serving = duplex.spawn(function()
            return srv:serve(function(c)
              accepted = accepted + 1
              c:settimeout(60)
              local line = c:read("l")   -- (not c:lines(): PUC 5.1 cannot wait in an iterator)
              while line do
                assert(c:write(line, "\n"))
                line = c:read("l")
              end
            end)
          end)
        end
        local connected, answered, failures = 0, 0, {}
        local go, finish = false, false
        local function gate(flag)
          return duplex.spawn(function()
            for _ = 1, 1e6 do
              if flag() or duplex.now() > deadline then return end
              duplex.sleep(0.005)
            end
          end)
        end
        local go_gate = gate(function() return go end)
        local finish_gate = gate(function() return finish end)
        local function client(i)
          local c, msg, code = duplex.connect("127.0.0.1", port, { timeout = 20 })
          connected = connected + 1
          if not c then
            failures[#failures + 1] = string.format("connect %d: %s (%s)", i, msg, code)
            return
          end
          local conn = own(c)
          conn:settimeout(30)
          go_gate:join(60)
          local line = "hello from " .. i
          local ok, wmsg = conn:write(line, "\n")
          local back, rmsg, rcode
          if ok then back, rmsg, rcode = conn:read("l") end
          if back == line then
            answered = answered + 1
          else
            failures[#failures + 1] = string.format("echo %d: %s %s %s %s",
              i, tostring(back), tostring(wmsg), tostring(rmsg), tostring(rcode))
            answered = answered + 1
          end
          finish_gate:join(60)
          conn:close()
        end
        local clients = {}
        -- connect in waves of 500 so the listen queue never overflows
        for i = 1, N do
          clients[i] = duplex.spawn(client, i)
          if i % 500 == 0 then
            for _ = 1, 1e6 do
              if connected >= i or duplex.now() > deadline then break end
              duplex.sleep(0.002)
            end
          end
          if #failures > 0 then break end
        end
        local all_open = connected == N and #failures == 0
        if in_process then             -- the server's side may lag behind
          for _ = 1, 1e6 do
            if accepted >= N or duplex.now() > deadline then break end
            duplex.sleep(0.002)
          end
        end
        local peak_fds = helpers.fdcount()
        go = true
        for _ = 1, 1e6 do
          if answered >= connected or duplex.now() > deadline then break end
          duplex.sleep(0.01)
        end
        local all_answered = answered
        finish = true
        for i = 1, #clients do clients[i]:join(30) end
        local after_fds
        if in_process then
          srv:close()
          after_fds = pack(serving:join(30))
        end
        return { all_open = all_open, peak_fds = peak_fds, answered = all_answered,
                 failures = failures, connected = connected, serving = after_fds }
      end)
    end)
    assert.same({}, { unpack(r.failures, 1, math.min(5, #r.failures)) })
    assert.is_true(r.all_open, "only " .. r.connected .. " connections opened")
    assert.equal(N, r.answered)
    -- every connection was open at once
    local per_conn = in_process and 2 or 1
    assert.is_true(r.peak_fds >= base_fds + per_conn * N,
      string.format("only %d descriptors open at the peak (%d before)", r.peak_fds, base_fds))
    if in_process then assert.same({ n = 2, true, true }, r.serving) end
    assert.is_true(elapsed < 60, "took " .. elapsed .. " s")
    assert.same({}, reports)
  end)
end)

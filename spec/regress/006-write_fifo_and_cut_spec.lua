-- Symptom: bytes from another writer landed inside a message that a task
-- was still sending: (a) a coroutine created inside a task (not a task
-- itself) wrote in the middle of another task's partially sent write;
-- (b) after a write ended part-way (timeout, or its task cancelled), the
-- next writer's bytes followed the cut-off message as if it were whole.
-- Cause: (a) lx_myturn let any coroutine that was not the running task
-- through, ignoring the client's writer FIFO; (b) nothing remembered that
-- the stream ended inside a message.
-- Fix: (a) inside duplex.run, a coroutine that is not a task may use a
-- socket only when no task is queued on that direction; otherwise (and
-- whenever it would have to wait) it raises "... cannot wait here ...".
-- (b) A write that ends part-way leaves the stream cut: until the task
-- whose write was cut completes a write on that client, writes from other
-- tasks fail at once with nil, "write <addr>: an earlier write was cut off
-- mid-message", "EPIPE", 0. The cut task may write the rest (a complete
-- write clears the cut). A cut left by a cancelled task stays for good.
--
-- Unix stream sockets: a peer's read frees the writer's send buffer at
-- once, so "the socket has room again" is deterministic (with the old
-- code, the intruding write then goes straight in instead of failing).
local duplex = require "duplex"
local helpers = require "spec.helpers"
local pack, unpack = helpers.pack, helpers.unpack

local MiB = 1024 * 1024

-- 8 MiB of lower-case letters in a 251-byte cycle (no "XYZ", no "B").
local function message()
  local unit = {}
  for i = 0, 250 do unit[#unit + 1] = string.char(97 + (i * 7 + math.floor(i / 26)) % 26) end
  local u = table.concat(unit)
  return string.rep(u, math.ceil(8 * MiB / #u)):sub(1, 8 * MiB)
end
local DATA = message()

-- A connected Unix stream pair: client, accepted peer (5 s timeouts),
-- closed by helpers.run_cleanups.
local function unix_pair()
  local path = helpers.tmpname()
  local srv = assert(duplex.listen("unix:" .. path))
  local c = assert(duplex.connect("unix:" .. path, nil, { timeout = 5 }))
  local p = assert(srv:accept(5))
  srv:close()                                -- (removes the path)
  c:settimeout(5)
  p:settimeout(5)
  helpers.defer(function() helpers.close(c, p) end)
  return c, p
end

-- Take what the peer has received so far, without waiting (nothing else
-- runs meanwhile: fewer than LX_BUDGET operations).
local function drain_now(p, into)
  p:settimeout(0)
  for _ = 1, 40 do
    local s, _, code = p:readsome()
    if not s then
      assert.equal("EAGAIN", code)
      break
    end
    into[#into + 1] = s
  end
  p:settimeout(5)
end

-- A task that reads `n` bytes from p (appended to `into`); returns true.
local function reader(p, into, n)
  return duplex.spawn(function()
    local got = 0
    for _ = 1, 1e6 do
      if got >= n then break end
      local s, msg = p:readsome()
      if not s then error("reader: " .. tostring(msg)) end
      into[#into + 1] = s
      got = got + #s
    end
    return true
  end)
end

-- Wait (bounded) until cond() holds.
local function wait_until(cond, what)
  local deadline = duplex.now() + 5
  while not cond() do
    if duplex.now() > deadline then error("timed out waiting until " .. what) end
    duplex.sleep(0.005)
  end
end

-- Check a write's results as `nil, msg, code, nwritten` for a cut stream.
local function assert_cut_refused(r)
  assert.same({ n = 4, nil, r[2], "EPIPE", 0 }, r)
  assert.is_string(r[2])
  assert.matches("^write .*cut off", r[2])
end

describe("regression 006: writes from other writers while a message is partly sent", function()
  after_each(helpers.run_cleanups)

  it("a coroutine created inside a task cannot write while a task is queued to write", function()
    local c, p = unix_pair()
    local got = {}
    local r = duplex.run(function()
      local a = duplex.spawn(function() return c:write(DATA) end)
      helpers.until_waiting(a, "write")       -- A has sent part of it and waits
      local early = {}
      drain_now(p, early)                     -- room again: A is woken, but not run yet
      assert.is_true(#table.concat(early) > 0)
      local b = duplex.spawn(function()
        return pcall(coroutine.wrap(function() return c:write("XYZ") end))
      end)
      local bok, ok, err = b:join(5)
      for _, s in ipairs(early) do got[#got + 1] = s end
      local rd = reader(p, got, #DATA - #table.concat(early))
      local ra = pack(a:join(10))
      local ok_rd = rd:join(10)
      p:settimeout(0.2)                       -- what comes after A's message, if anything
      local extra = p:read(3)
      return { bok = bok, ok = ok, err = err, ra = ra, ok_rd = ok_rd, extra = extra }
    end)
    assert.is_true(r.bok)
    assert.same({ n = 2, true, c }, r.ra)
    assert.is_true(r.ok_rd)
    local all = table.concat(got)
    assert.same({ coroutine_write_raised = true, XYZ_at = "nowhere", received_exactly_A = true },
      { coroutine_write_raised = r.ok == false,
        XYZ_at = all:find("XYZ", 1, true) or "nowhere",
        received_exactly_A = all == DATA })
    assert.matches("cannot wait here", r.err, 1, true)
    assert.is_nil(r.extra)
  end)

  it("after a write timed out part-way, other tasks' writes fail with EPIPE until the cut task completes one", function()
    local c, p = unix_pair()
    local got = {}
    local r = duplex.run(function()
      local res = {}
      local go_on = false
      local a = duplex.spawn(function()
        c:settimeout(0.2)
        res.a1 = pack(c:write(DATA))   -- the peer does not read: times out
        c:settimeout(5)
        wait_until(function() return go_on end, "go_on")
        res.a2 = pack(c:write(DATA:sub(res.a1[4] + 1)))   -- the rest
      end)
      wait_until(function() return res.a1 ~= nil end, "A's write timed out")
      drain_now(p, got)                       -- room again for a small write
      local b1 = duplex.spawn(function() return pack(c:write("B")) end)
      res.b1 = select(2, b1:join(5))
      res.main1 = pack(c:write("M"))   -- run's main task is another task too
      local rd = reader(p, got, #DATA + 1 - #table.concat(got))
      go_on = true
      assert.is_true(a:join(10))
      local b2 = duplex.spawn(function() return pack(c:write("B")) end)
      res.b2 = select(2, b2:join(5))
      res.rd = pack(rd:join(10))
      return res
    end)
    local n = r.a1[4]
    assert.same({ n = 4, nil, r.a1[2], "ETIMEDOUT", n }, r.a1)
    assert.is_true(n > 0 and n < #DATA, "A wrote " .. tostring(n) .. " bytes")
    assert_cut_refused(r.b1)
    assert_cut_refused(r.main1)
    assert.same({ n = 1, c }, r.a2)           -- the cut task may send the rest
    assert.same({ n = 1, c }, r.b2)           -- which clears the cut
    assert.same({ n = 2, true, true }, r.rd)
    local all = table.concat(got)
    assert.equal(#DATA + 1, #all)
    assert.is_true(all == DATA .. "B", "the peer did not receive A's whole message, then B")
  end)

  it("after a task was cancelled mid-write, every later write fails with EPIPE", function()
    local c, p = unix_pair()
    local got = {}
    local r = duplex.run(function()
      local res = {}
      local a = duplex.spawn(function() return c:write(DATA) end)
      helpers.until_waiting(a, "write")       -- A has sent part of it and waits
      assert.same({ true }, { a:cancel() })
      drain_now(p, got)                       -- room again for a small write
      local b = duplex.spawn(function() return pack(c:write("B")) end)
      res.b = select(2, b:join(5))
      res.main = pack(c:write("M"))   -- run's main task is another task too
      duplex.sleep(0.05)
      local b2 = duplex.spawn(function() return pack(c:write("later")) end)
      res.b2 = select(2, b2:join(5))
      -- everything the peer receives, until nothing comes for 0.2 s
      p:settimeout(0.2)
      for _ = 1, 1000 do
        local s, _, code = p:readsome()
        if not s then
          res.last = code
          break
        end
        got[#got + 1] = s
      end
      return res
    end)
    assert_cut_refused(r.b)
    assert_cut_refused(r.main)
    assert_cut_refused(r.b2)
    -- the peer got part of A's message and nothing after it
    assert.equal("ETIMEDOUT", r.last)
    local all = table.concat(got)
    assert.is_true(#all > 0 and #all < #DATA, "the peer got " .. #all .. " bytes")
    assert.is_true(all == DATA:sub(1, #all), "bytes after the cut-off part of A's message")
  end)
end)

-- Symptom: inside duplex.run, a task waiting for a line slept on although
-- its line had arrived (for ever without a timeout; with one, until the
-- deadline, when it found the line buffered), after another task called
-- client:read(0) on the same client.
-- Cause: read(0) received into the buffer whenever the buffer was empty,
-- without regard for the tasks queued to read, and woke nobody. epoll is
-- edge-triggered: the data that arrived while the reader waited was taken
-- before the next epoll_wait, the edge was swallowed, and the waiting
-- reader was never resumed.
-- Fix: read(0) takes its turn in the client's reader FIFO like any read:
-- it queues behind the waiting reader, which gets its line, and then
-- returns "" without waiting for data.
local duplex = require "duplex"
local helpers = require "spec.helpers"
local pack, unpack = helpers.pack, helpers.unpack

describe("regression 003: read(0) while another task waits to read the same client", function()
  after_each(helpers.run_cleanups)

  -- The reader A waits in c:read("l") (no timeout); then `zero(c, p,
  -- a_done)`, run by a task other than A, has the peer send A's line and
  -- calls c:read(0) in the same turn (no epoll_wait in between, A not
  -- resumed yet). It returns read(0)'s results and whether A had its line
  -- when read(0) returned. Returns A's join results and zero's results.
  local function scenario(zero)
    local c, p = helpers.deferred_pair()
    return duplex.run(function()
      c:settimeout(nil)
      local done = { a = false }
      local a = duplex.spawn(function()
        local r = pack(c:read("l"))
        done.a = true
        return r
      end)
      helpers.until_waiting(a, "read")   -- A waits in the reader FIFO
      assert.is_false(done.a)
      local z, after_a = zero(c, p, done)
      local ra = pack(a:join(2))   -- A never woke: "join: timed out"
      if not done.a then a:cancel() end
      return ra, z, after_a
    end)
  end

  local function write_then_read0(c, p, done)
    assert(p:write("hello\n"))          -- in c's kernel buffer at once (loopback)
    local z = pack(c:read(0))
    return z, done.a
  end

  it("from run's main task: the waiting reader gets its line, read(0) returns \"\" after it", function()
    local ra, z, after_a = scenario(write_then_read0)
    assert.same({ n = 2, true, { n = 1, "hello" } }, ra)
    assert.same({ n = 1, "" }, z)
    assert.is_true(after_a, "read(0) did not wait for its turn behind the waiting reader")
  end)

  it("from another task: the waiting reader gets its line, read(0) returns \"\" after it", function()
    local ra, z, after_a = scenario(function(c, p, done)
      local b = duplex.spawn(write_then_read0, c, p, done)
      local ok, bz, b_after_a = b:join(5)
      assert.is_true(ok)
      return bz, b_after_a
    end)
    assert.same({ n = 2, true, { n = 1, "hello" } }, ra)
    assert.same({ n = 1, "" }, z)
    assert.is_true(after_a, "read(0) did not wait for its turn behind the waiting reader")
  end)
end)

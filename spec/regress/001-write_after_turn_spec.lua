-- Symptom: inside a task that had used up its turn (64 operations without
-- waiting), a write to a full socket failed at once with EAGAIN although
-- the client had no timeout.
-- Cause: the forced yield that keeps a busy task from starving the others
-- continued into write_k before write's state (deadline, bytes done) was on
-- the stack, so the deadline read as 0 ("never wait").
-- Fix: an operation saves its state first, then yields (lx_spent/lx_yield).
local duplex = require "duplex"
local helpers = require "spec.helpers"

describe("regression 001: a write that waits after the task used its turn", function()
  it("waits for the peer instead of failing with EAGAIN", function()
    duplex.run(function()
      local c, p, srv = helpers.pair()
      c:setoption("sndbuf", 16384)   -- (a tiny rcvbuf stalls TCP under gVisor)
      c:settimeout(nil)
      local chunk = string.rep("x", 4096)
      -- fill the socket without waiting
      local queued = 0
      for _ = 1, 100000 do
        local ok, _, code, n = c:settimeout(0):write(chunk)
        if not ok then
          assert.equal("EAGAIN", code)
          queued = queued + n
          break
        end
        queued = queued + #chunk
      end
      c:settimeout(nil)
      local want = queued + #chunk
      local reader = duplex.spawn(function()
        duplex.sleep(0.1)            -- the socket stays full meanwhile
        local got = 0
        while got < want do got = got + #assert(p:readsome()) end
        return got
      end)
      -- Use up the turn exactly: a ticker task runs only when we yield, so
      -- once it has ticked our turn starts afresh; then 64 (LX_BUDGET)
      -- operations leave the next one to yield.
      local ticks, stop = 0, false
      local ticker = duplex.spawn(function()
        while not stop do ticks = ticks + 1; duplex.sleep(0) end
      end)
      local t0 = ticks
      for _ = 1, 1000 do
        if ticks ~= t0 then break end
        assert(c:write(""))
      end
      assert.is_true(ticks ~= t0)
      for _ = 1, 64 do assert(c:write("")) end
      local r, msg, code = c:write(chunk)
      assert.same({ c }, { r, msg, code })
      stop = true
      assert.same({ true, want }, { reader:join(10) })
      ticker:join(1)
      helpers.close(c, p, srv)
    end)
  end)
end)

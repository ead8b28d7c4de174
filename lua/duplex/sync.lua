-- duplex.sync: tasks that coordinate. cond() (wait, signal, broadcast) and
-- queue(n), a bounded FIFO whose put and get wait inside tasks. Built on the
-- scheduler's suspend/wake (a timer operation of the driver), so a wait
-- yields like any socket wait and honours the same timeouts. Returns
-- { cond, queue }: duplex.cond and duplex.queue.

local core = require "duplex.core"
local auxlib = require "duplex.auxlib"

local current, suspend, wake, alive, now, hold =
  core.current, core.suspend, core.wake, core.alive, core.now, core.hold
local checkself, checktimeout, argcheck, isinteger =
  auxlib.checkself, auxlib.checktimeout, auxlib.argcheck, auxlib.isinteger

local sync = { core = core }

-- Conditions --------------------------------------------------------------

local Cond = { __name = "duplex.cond" }
Cond.__index = Cond

--- A condition: tasks wait on it until another signals it.
function sync.cond()
  return setmetatable({}, Cond)
end

-- A cond's waiters form a doubly linked list, first to last in the order
-- they began waiting: signal takes the first, and a wait that ends
-- without a signal (timed out, its task cancelled) unlinks itself in
-- O(1), so nothing of it stays behind.
local function push(self, e)
  local last = self.last
  e.prev, e.listed = last, true
  if last then last.next = e else self.first = e end
  self.last = e
end

local function unlink(self, e)
  local prev, next_ = e.prev, e.next
  if prev then prev.next = next_ else self.first = next_ end
  if next_ then next_.prev = prev else self.last = prev end
  e.prev, e.next, e.listed = nil, nil, nil
end

-- A waiter. However its wait ends it is released: if still listed (timed
-- out, or its task cancelled mid-wait) it unlinks itself; if it was given
-- a signal but its task was cancelled before it could take it, the signal
-- passes on to the next waiter, so no wake-up is ever lost. A wait that
-- returns releases it itself; while it waits it is its task's held value
-- (core.hold), which the scheduler releases through __cancel when the
-- task is cancelled (every Lua: no to-be-closed variable needed).
local Waiter = {}
local function release(e)
  if e.listed then unlink(e.cond, e)
  elseif e.signaled and not e.done then e.cond:signal() end
end
Waiter.__cancel = release

-- Wait until signalled or until the deadline (nil: none).
local function wait(self, deadline, method)
  local me = current()
  if not me then error(method .. ": not inside a duplex task", 3) end
  local entry = setmetatable({ id = me, cond = self }, Waiter)
  push(self, entry)
  hold(entry)
  while not entry.signaled do
    local left = deadline and math.max(0, deadline - now())
    if not suspend(left) and not entry.signaled then
      hold(nil)
      release(entry)
      return nil, method .. ": timed out", "ETIMEDOUT"
    end
  end
  hold(nil)
  entry.done = true
  return true
end

--- Wait until signalled: true, or nil, msg, "ETIMEDOUT" once timeout
--- seconds have passed first.
function Cond:wait(timeout)
  checkself(self, Cond, "wait")
  checktimeout(timeout, 1, "wait")
  return wait(self, timeout and now() + timeout, "cond:wait")
end

-- The first waiter, taken off the list; or nil. (A waiter whose task
-- ended unlinked itself; alive() guards against one that could not.)
local function take(self)
  local e = self.first
  while e do
    unlink(self, e)
    if alive(e.id) then return e end
    e = self.first
  end
  return nil
end

--- Wake the task that has waited longest; true if there was one.
function Cond:signal()
  checkself(self, Cond, "signal")
  local e = take(self)
  if not e then return false end
  e.signaled = true
  wake(e.id)
  return true
end

--- Wake every waiting task; returns how many.
function Cond:broadcast()
  checkself(self, Cond, "broadcast")
  local n = 0
  for e in take, self do
    e.signaled = true
    wake(e.id)
    n = n + 1
  end
  return n
end

function Cond:__tostring() return "duplex.cond" end

-- Queues ------------------------------------------------------------------

local Queue = { __name = "duplex.queue" }
Queue.__index = Queue

--- A FIFO of at most n values (nil is not a value here).
function sync.queue(n)
  argcheck(isinteger(n) and n >= 1, 1, "queue", "capacity must be a positive integer")
  return setmetatable({ items = {}, first = 1, count = 0, cap = n,
                        notfull = sync.cond(), notempty = sync.cond() }, Queue)
end

--- Add v at the end, waiting while the queue is full: true, or nil, msg,
--- "ETIMEDOUT" (v not added).
function Queue:put(v, timeout)
  checkself(self, Queue, "put")
  argcheck(v ~= nil, 1, "put", "value expected")
  checktimeout(timeout, 2, "put")
  local deadline = timeout and now() + timeout
  while self.count >= self.cap do
    if timeout == 0 then return nil, "queue:put: full", "EAGAIN" end
    local ok, msg, code = wait(self.notfull, deadline, "queue:put")
    if not ok then return nil, msg, code end
  end
  self.items[self.first + self.count] = v
  self.count = self.count + 1
  self.notempty:signal()
  return true
end

--- Take the first value, waiting while the queue is empty: the value, or
--- nil, msg, "ETIMEDOUT".
function Queue:get(timeout)
  checkself(self, Queue, "get")
  checktimeout(timeout, 1, "get")
  local deadline = timeout and now() + timeout
  while self.count == 0 do
    if timeout == 0 then return nil, "queue:get: empty", "EAGAIN" end
    local ok, msg, code = wait(self.notempty, deadline, "queue:get")
    if not ok then return nil, msg, code end
  end
  local v = self.items[self.first]
  self.items[self.first] = nil
  self.first = self.first + 1
  self.count = self.count - 1
  self.notfull:signal()
  return v
end

-- #q (Lua 5.2 and later: 5.1 and LuaJIT take no __len from a table), and
-- q:len() on every version.
function Queue:__len() return self.count end
Queue.len = Queue.__len
function Queue:__tostring()
  return string.format("duplex.queue (%d of %d)", self.count, self.cap)
end

return sync

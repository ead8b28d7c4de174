-- spec/fuzz/read_model.lua: differential fuzz of duplex's reads over real
-- sockets against a pure-Lua model of the stream.
--
-- Run from the repository root (after `make`):
--   LUA_PATH="./lua/?.lua;./lua/?/init.lua;;" LUA_CPATH="./build/?.so;;" \
--     lua5.4 spec/fuzz/read_model.lua [seed]
-- Environment: FUZZ_SEED (when no argument; default: the clock),
-- FUZZ_SECONDS (wall time, default 60), FUZZ_OPS (read ops, default
-- unbounded), FUZZ_VERBOSE (set: print every round).
--
-- Each round connects a pair on 127.0.0.1 (port 0). A writer task sends a
-- stream planned in advance (lines ending in "\n" and "\r\n", lone "\r",
-- binary bytes, delimiters, long lines, rarely a piece larger than the
-- receive scratch) in random splits with random tiny sleeps, then
-- half-closes (or closes), or keeps the stream open until the reader is
-- done. The reader issues random reads: read with 1-3 formats ("l", "L",
-- "a", counts), read(0), readuntil with a random delimiter and max,
-- readsome(max), maxline changes, short timeouts. The model (the whole
-- stream as a string, a position, whether the stream will end) predicts
-- each result:
--   * read / readuntil: what the call answers once every byte has arrived
--     and the end of stream (if any) is seen. Because a scan over part of
--     the stream either needs more or decides as over all of it, the only
--     timing-dependent case is "the bytes have all arrived but the end has
--     not been seen yet", which the model also evaluates (a 0 count gives
--     "" there instead of nil).
--   * readsome: 1..max bytes that start the rest; nil only at the end.
--   * a read that could never be answered (the stream stays open) must
--     time out; any read with a short timeout may time out; a read that
--     fails or times out consumes nothing.
-- At the end of a round the rest must come back whole: read("a") when the
-- stream ends, readsome until every byte otherwise.
-- Any mismatch prints the seed, the round, the stream and the op log, and
-- exits 1. The PRNG drives the plan and the choice of ops; readsome's
-- lengths depend on timing, so a seed replays the same streams and op
-- choices but not always the same interleaving: the printed stream and op
-- log are the reproducer.

local duplex = require "duplex"

-- (one source for Lua 5.1, 5.3, 5.4 and LuaJIT)
local pack = table.pack or function(...) return { n = select("#", ...), ... } end
local unpack = table.unpack or unpack
local function integer(s)             -- math.tointeger(tonumber(s))
  local n = tonumber(s)
  return n and n % 1 == 0 and n or nil
end

local seed = integer(arg and arg[1] or os.getenv("FUZZ_SEED") or "")
  or (os.time() * 1000 + math.floor(duplex.now() * 1000) % 1000)
local SECONDS = tonumber(os.getenv("FUZZ_SECONDS") or "") or 60
local MAX_OPS = integer(os.getenv("FUZZ_OPS") or "") or math.maxinteger or 2 ^ 53
local VERBOSE = os.getenv("FUZZ_VERBOSE") ~= nil
local LONG = 10          -- seconds: a read that should be answered never waits this long
local HANG = 15          -- seconds one op may take before the watchdog calls it a hang

math.randomseed(seed)
local random = math.random

-- Reporting ----------------------------------------------------------------

local oplog, round_info = {}, {}
local LOGMAX = 60

-- A Lua string literal for s, printable ASCII only.
local function lit(s)
  return '"' .. s:gsub('[%c"\\\128-\255]', function(ch)
    if ch == "\n" then return "\\n" elseif ch == "\r" then return "\\r"
    elseif ch == '"' or ch == "\\" then return "\\" .. ch end
    return string.format("\\%03d", ch:byte())
  end) .. '"'
end

local function show(v)
  if v == nil then return "nil" end
  if type(v) ~= "string" then return tostring(v) end
  if #v > 60 then return lit(v:sub(1, 60)) .. string.format("..(%d bytes)", #v) end
  return lit(v)
end

local function log(line)
  oplog[#oplog + 1] = line
  if #oplog > LOGMAX then table.remove(oplog, 1) end
end

local function mismatch(why)
  io.stderr:write("\nread_model: MISMATCH: ", why, "\n")
  local m = round_info.m or {}
  io.stderr:write(string.format("seed %d, round %d, will_close %s (%s), maxline %s, position %s\n",
    seed, round_info.round or -1, tostring(round_info.will_close), round_info.ending or "?",
    tostring(m.maxline), tostring(m.pos)))
  local stream = round_info.stream or ""
  io.stderr:write(string.format("stream (%d bytes): %s\n", #stream,
    lit(#stream > 20000 and stream:sub(1, 20000) or stream)))
  io.stderr:write("op log (last ", #oplog, "):\n")
  for _, l in ipairs(oplog) do io.stderr:write("  ", l, "\n") end
  io.stderr:flush()
  os.exit(1)
end

-- The model -------------------------------------------------------------------
-- R: the rest of the stream (all of it, arrived or not); eof: whether the
-- end of stream is seen. Results: {more = true}, {err = "EMSGSIZE"}, or
-- {vals = {...}, ended = bool, used = bytes consumed}.

local function eval_read(R, eof, maxline, fmts)
  local vals, off, n = {}, 0, #R
  local offs = {}                  -- offs[i]: where value i starts
  for _, f in ipairs(fmts) do
    local rem = n - off
    offs[#vals + 1] = off
    if f == "l" or f == "L" then
      local j = R:find("\n", off + 1, true)
      if j then
        if j - 1 - off > maxline then return { err = "EMSGSIZE" } end
        local v = R:sub(off + 1, j)
        if f == "l" then
          v = v:sub(1, -2)
          if v:sub(-1) == "\r" then v = v:sub(1, -2) end
        end
        vals[#vals + 1] = v
        off = j
      else
        if rem > maxline then return { err = "EMSGSIZE" } end
        if not eof then return { more = true } end
        if rem == 0 then return { vals = vals, ended = true, used = off, offs = offs } end
        vals[#vals + 1] = R:sub(off + 1)
        off = n
      end
    elseif f == "a" then
      if not eof then return { more = true } end
      vals[#vals + 1] = R:sub(off + 1)
      off = n
    else
      if eof and rem == 0 then return { vals = vals, ended = true, used = off, offs = offs } end
      if rem >= f then
        vals[#vals + 1] = R:sub(off + 1, off + f)
        off = off + f
      elseif eof then
        vals[#vals + 1] = R:sub(off + 1)
        off = n
      else
        return { more = true }
      end
    end
  end
  return { vals = vals, ended = false, used = off, offs = offs }
end

local function eval_until(R, eof, d, max)
  local i = R:find(d, 1, true)
  if i then
    if i - 1 > max then return { err = "EMSGSIZE" } end
    return { vals = { R:sub(1, i - 1) }, ended = false, used = i - 1 + #d }
  end
  if #R >= max + #d then return { err = "EMSGSIZE" } end
  if not eof then return { more = true } end
  return { vals = {}, ended = true, used = 0 }
end

local function same_result(a, b)
  if a.more or b.more then return a.more == b.more end
  if a.err or b.err then return a.err == b.err end
  if a.ended ~= b.ended or a.used ~= b.used or #a.vals ~= #b.vals then return false end
  for i = 1, #a.vals do
    if a.vals[i] ~= b.vals[i] then return false end
  end
  return true
end

local function show_result(r)
  if r.more then return "(waits forever)" end
  if r.err then return "nil, " .. r.err end
  local t = {}
  for i = 1, #r.vals do t[#t + 1] = show(r.vals[i]) end
  if r.ended then t[#t + 1] = "nil" end
  return table.concat(t, ", ") .. " [used " .. r.used .. "]"
end

-- The results the model allows: the answer once everything has arrived,
-- and (if the stream will end) the answer before the end is seen.
local function candidates(eval, will_close)
  local final = eval(will_close)
  local list = { final }
  if will_close then
    local early = eval(false)
    if not early.more and not same_result(early, final) then list[#list + 1] = early end
  end
  return list, final.more
end

-- Turn the packed results of a call into a model result (or a failure).
local function actual_of(r)
  if r.n == 3 and r[1] == nil and type(r[2]) == "string" and type(r[3]) == "string" then
    return { fail = r[3], msg = r[2] }
  end
  local vals, ended = {}, false
  for i = 1, r.n do
    if r[i] == nil then
      if i ~= r.n then return { bad = "nil before the last result" } end
      ended = true
    elseif type(r[i]) ~= "string" then
      return { bad = "a result of type " .. type(r[i]) }
    else
      vals[#vals + 1] = r[i]
    end
  end
  return { vals = vals, ended = ended }
end

local function show_actual(a)
  if a.bad then return "BAD: " .. a.bad end
  if a.fail then return "nil, " .. show(a.msg) .. ", " .. a.fail end
  local t = {}
  for i = 1, #a.vals do t[#t + 1] = show(a.vals[i]) end
  if a.ended then t[#t + 1] = "nil" end
  return table.concat(t, ", ")
end

-- The stream -------------------------------------------------------------------

local DELIMS = { "\n", "\r\n", "--", "::", "\0", "\r\n\r\n", "ab", "|", "\r", "xyz" }
local WORD = "abcdefghxyz -|:0123456789"

local function word(n)
  local t = {}
  for i = 1, n do
    local k = random(#WORD)
    t[i] = WORD:sub(k, k)
  end
  return table.concat(t)
end

local function bytes(n)
  local t = {}
  for i = 1, n do t[i] = string.char(random(0, 255)) end
  return table.concat(t)
end

local function make_stream()
  local parts, total = {}, 0
  local target = random(0, 10) == 0 and 0 or random(1, random(2) == 1 and 300 or 3000)
  while total < target do
    local k = random(100)
    local s
    if k <= 35 then
      s = word(random(0, 20)) .. (random(3) == 1 and "\r\n" or "\n")
    elseif k <= 45 then
      s = word(random(0, 8)) .. "\r" .. word(random(0, 8))
    elseif k <= 60 then
      s = bytes(random(1, 30))
    elseif k <= 80 then
      s = DELIMS[random(#DELIMS)]
    elseif k <= 90 then
      s = word(random(1, 12))
    elseif k <= 99 then
      s = string.rep("x", random(30, 400)) .. (random(2) == 1 and "\n" or "\r\n")
    else
      s = string.rep("y", random(20000, 90000))   -- past the 64 KiB receive scratch
    end
    parts[#parts + 1] = s
    total = total + #s
  end
  return table.concat(parts)
end

-- The writer's plan: chunks, each written with 1-2 arguments, then a pause.
local function make_plan(stream)
  local plan, i = {}, 1
  local small = random(3) == 1
  local least = math.floor((#stream + 399) / 400)      -- at most ~400 writes: the writer ends soon
  while i <= #stream do
    local n = math.max(least, small and random(1, 5) or random(1, random(2) == 1 and 40 or 2000))
    local chunk = stream:sub(i, i + n - 1)
    i = i + #chunk
    local k, pause = random(10), nil
    if k <= 3 then pause = nil
    elseif k <= 6 then pause = 0
    else pause = random() * 0.002 end
    plan[#plan + 1] = { chunk = chunk, split = random(4) == 1 and random(0, #chunk) or nil,
                        pause = pause }
  end
  return plan
end

local function writer(c, plan, ending, done)
  c:settimeout(LONG * 3)
  for _, step in ipairs(plan) do
    local ok, msg
    if step.split then
      ok, msg = c:write(step.chunk:sub(1, step.split), step.chunk:sub(step.split + 1))
    else
      ok, msg = c:write(step.chunk)
    end
    if not ok then mismatch("writer: write failed: " .. tostring(msg)) end
    if step.pause then duplex.sleep(step.pause) end
  end
  if ending == "shutdown" then
    assert(c:shutdown("w"))
  elseif ending == "close" then
    c:close()
    return
  end
  -- Wait for the reader to finish (it closes its end), then close.
  local _, msg, code = c:read("a")
  if code then mismatch("writer: waiting for the reader: " .. tostring(msg)) end
  done.writer = true
  c:close()
end

-- The reader -----------------------------------------------------------------------

local state = { op_started = nil, op_name = nil }
local nops, nrounds = 0, 0

local function pick_timeout(hang)
  if hang then
    local t = { 0, 0.001, 0.003, 0.01 }
    return t[random(#t)]
  end
  local k = random(100)
  if k <= 45 then return LONG end
  if k <= 55 then return nil end                      -- wait forever (watchdog)
  if k <= 70 then return 0 end
  return random() * 0.01
end

local function pick_format()
  local k = random(100)
  if k <= 30 then return "l" end
  if k <= 45 then return "L" end
  if k <= 49 then return "a" end
  if k <= 57 then return 0 end
  if k <= 90 then return random(1, 20) end
  return random(21, 600)
end

local function pick_delim(R)
  local k = random(100)
  if k <= 50 then return DELIMS[random(#DELIMS)] end
  if k <= 85 and #R > 0 then
    local i = random(#R)
    return R:sub(i, i + random(0, 3))
  end
  return bytes(random(1, 3))
end

local function fmtlist(fmts)
  local t = {}
  for i, f in ipairs(fmts) do t[i] = type(f) == "string" and lit(f) or tostring(f) end
  return table.concat(t, ", ")
end

-- Check a failed call: only a timeout may happen, and only when allowed.
local function check_failure(a, desc, timeout, expected, hang)
  local code = a.fail
  if code == "EMSGSIZE" then
    for _, e in ipairs(expected) do
      if e.err == "EMSGSIZE" then return end
    end
  end
  if timeout ~= nil and (code == "ETIMEDOUT" or code == "EAGAIN") then
    local want = timeout == 0 and "EAGAIN" or "ETIMEDOUT"
    if code ~= want then mismatch(desc .. ": " .. code .. " with timeout " .. timeout) end
    if timeout == LONG and not hang then
      mismatch(desc .. ": timed out after " .. LONG .. " s although the model answers")
    end
    return
  end
  local t = {}
  for _, e in ipairs(expected) do t[#t + 1] = show_result(e) end
  mismatch(desc .. ": got " .. show_actual(a) .. "; model: " .. table.concat(t, " | "))
end

local function run_op(p, m)
  local R = m.stream:sub(m.pos + 1)
  local k = random(100)
  local hang, expected, call, desc, fmts
  if k <= 8 then
    local choices = { 1, 2, 3, 5, 8, 13, 16, 64, 300, 1048576 }
    m.maxline = choices[random(#choices)]
    assert(p:setoption("maxline", m.maxline) == p)
    if p:getoption("maxline") ~= m.maxline then mismatch("getoption(maxline)") end
    log(string.format("setoption(maxline, %d)", m.maxline))
    return
  elseif k <= 53 then
    fmts = {}
    for i = 1, random(random(3)) do fmts[i] = pick_format() end
    expected, hang = candidates(function(eof) return eval_read(R, eof, m.maxline, fmts) end, m.will_close)
    desc = "read(" .. fmtlist(fmts) .. ")"
    call = function() return pack(p:read(unpack(fmts))) end
  elseif k <= 58 then
    expected, hang = candidates(function(eof) return eval_read(R, eof, m.maxline, { 0 }) end, m.will_close)
    desc = "read(0)"
    call = function() return pack(p:read(0)) end
  elseif k <= 83 then
    local d = pick_delim(R)
    local max
    local j = random(10)
    if j <= 4 then max = nil
    elseif j <= 9 then max = random(0, 40)
    else max = random(41, 5000) end
    local eff = max or m.maxline
    expected, hang = candidates(function(eof) return eval_until(R, eof, d, eff) end, m.will_close)
    desc = string.format("readuntil(%s, %s)", lit(d), tostring(max))
    call = function() return pack(p:readuntil(d, max)) end
  else
    local max = random(4) == 1 and nil or random(1, 50)
    hang = #R == 0 and not m.will_close
    desc = string.format("readsome(%s)", tostring(max))
    call = function() return pack(p:readsome(max)) end
    expected = "some"
    m.some_max = max or 65536
  end
  local timeout = pick_timeout(hang)
  p:settimeout(timeout)
  desc = desc .. " timeout " .. tostring(timeout) .. " at " .. m.pos
  state.op_started, state.op_name = duplex.now(), desc
  local r = call()
  state.op_started = nil
  nops = nops + 1
  local a = actual_of(r)
  log(desc .. " -> " .. show_actual(a))
  if a.bad then mismatch(desc .. ": " .. a.bad) end
  if expected == "some" then
    if a.fail then
      if timeout ~= nil and (a.fail == "ETIMEDOUT" or a.fail == "EAGAIN") then
        local want = timeout == 0 and "EAGAIN" or "ETIMEDOUT"
        if a.fail ~= want then mismatch(desc .. ": " .. a.fail) end
        if timeout == LONG and not hang then mismatch(desc .. ": timed out with data to come") end
        return
      end
      mismatch(desc .. ": got " .. show_actual(a))
    end
    if hang then mismatch(desc .. ": answered although nothing can come") end
    if a.ended then
      if #a.vals ~= 0 or not (#R == 0 and m.will_close) then
        mismatch(desc .. ": nil with " .. #R .. " bytes left")
      end
      return
    end
    local s = a.vals[1]
    if #a.vals ~= 1 or #s < 1 or #s > m.some_max or R:sub(1, #s) ~= s then
      mismatch(desc .. ": got " .. show_actual(a) .. " but the rest starts " .. show(R:sub(1, 60)))
    end
    m.pos = m.pos + #s
    return
  end
  if a.fail then
    check_failure(a, desc, timeout, expected, hang)
    return
  end
  if hang then mismatch(desc .. ": answered " .. show_actual(a) .. " although it can never be") end
  for _, e in ipairs(expected) do
    if not e.more and not e.err and e.ended == a.ended and #e.vals == #a.vals then
      local same = true
      for i = 1, #e.vals do
        if e.vals[i] ~= a.vals[i] then same = false break end
      end
      if same then
        m.pos = m.pos + e.used
        return
      end
    end
  end
  local t = {}
  for _, e in ipairs(expected) do t[#t + 1] = show_result(e) end
  mismatch(desc .. ": got " .. show_actual(a) .. "; model: " .. table.concat(t, " | "))
end

-- After the ops: the rest must come back whole, and nothing more.
local function drain(p, m)
  local rest = m.stream:sub(m.pos + 1)
  p:settimeout(LONG)
  state.op_started, state.op_name = duplex.now(), "drain"
  if m.will_close then
    local got, msg, code = p:read("a")
    if got ~= rest then
      mismatch(string.format("drain: read(\"a\") gave %s (%s %s), the rest is %s",
        show(got), tostring(msg), tostring(code), show(rest)))
    end
    local again = pack(p:read("l"))
    if again.n ~= 1 or again[1] ~= nil then mismatch("drain: read(\"l\") after the end gave " .. show(again[1])) end
  else
    local got, n = {}, 0
    while n < #rest do
      local s, msg = p:readsome()
      if not s then mismatch("drain: readsome failed: " .. tostring(msg) .. " after " .. n .. " bytes") end
      got[#got + 1] = s
      n = n + #s
    end
    if table.concat(got) ~= rest then mismatch("drain: readsome gave other bytes than the rest") end
    p:settimeout(0.002)
    local s, _, code = p:read(1)
    if s ~= nil or code ~= "ETIMEDOUT" then mismatch("drain: a byte after the stream: " .. show(s)) end
  end
  state.op_started = nil
  log("drain ok (" .. #rest .. " bytes)")
end

local function round(srv, port, deadline)
  nrounds = nrounds + 1
  local stream = make_stream()
  local k = random(10)
  local ending = k <= 6 and "shutdown" or k <= 7 and "close" or "open"
  local m = { stream = stream, pos = 0, will_close = ending ~= "open", maxline = 1048576 }
  round_info = { round = nrounds, stream = stream, will_close = m.will_close, ending = ending, m = m }
  oplog = {}
  local plan = make_plan(stream)
  local c = assert(duplex.connect("127.0.0.1", port, { timeout = LONG }))
  local p = assert(srv:accept(LONG))
  local done = {}
  local w = duplex.spawn(writer, c, plan, ending, done)
  local budget = random(5, 150)
  for _ = 1, budget do
    if nops >= MAX_OPS or duplex.now() >= deadline then break end
    if random(10) == 1 then duplex.sleep(random(2) == 1 and 0 or random() * 0.002) end
    run_op(p, m)
  end
  drain(p, m)
  p:close()
  local ok, err = w:join(LONG * 3)
  if not ok then mismatch("writer task: " .. tostring(err)) end
  if ending == "open" and not done.writer then mismatch("writer did not see the reader close") end
  if VERBOSE then
    print(string.format("round %d: %d bytes, %s, %d ops so far", nrounds, #stream, ending, nops))
  end
end

local t0 = duplex.now()
local deadline = t0 + SECONDS
print(string.format("read_model: seed %d, %g s", seed, SECONDS))
duplex.run(function()
  local srv = assert(duplex.listen("127.0.0.1", 0))
  local _, port = srv:getsockname()
  local finished = false
  local watchdog = duplex.spawn(function()
    while not finished do
      duplex.sleep(0.25)
      if state.op_started and duplex.now() - state.op_started > HANG then
        mismatch("hang: " .. tostring(state.op_name) .. " still waiting after " .. HANG .. " s")
      end
    end
  end)
  while duplex.now() < deadline and nops < MAX_OPS do
    round(srv, port, deadline)
  end
  finished = true
  watchdog:cancel()
  srv:close()
end)
local elapsed = duplex.now() - t0
print(string.format("read_model: seed %d: %d executions (read ops) in %d rounds, %.1f s, %.0f/min, no mismatch",
  seed, nops, nrounds, elapsed, nops / elapsed * 60))

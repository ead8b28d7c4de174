-- spec/44-stream_spec.lua: duplex.stream(fd [, opts]) (issue 7): a
-- duplex.client over a descriptor the program did not make. Pipes are made
-- by the shell (or by python3) for a child Lua process, which wraps its own
-- descriptors and writes what it saw to a results file that the test loads:
-- reads yield inside tasks, the read formats and lines() work, a write to a
-- pipe whose reader is gone returns nil, msg, "EPIPE" (no SIGPIPE), the
-- descriptor's O_NONBLOCK is put back on close, close closes fds above 2
-- (not with opts.close = false, and not 0-2 by default). Ttys are not tried
-- (CI has none). Bad descriptors and options are checked in this process.
-- Loopback and port 0 only; every wait has a deadline.

local duplex = require "duplex"
local helpers = require "spec.helpers"
local pack, unpack = helpers.pack, helpers.unpack
local slurp, spit, mktemp_dir = helpers.slurp, helpers.spit, helpers.mktemp_dir

local defer, run_cleanups = helpers.defer, helpers.run_cleanups
local quote = helpers.shquote




-- What every child script begins with: RESULT (the results file, arg 1),
-- put(key, value) to record a result, and helpers that look at /proc.
local PRELUDE = [==[
local duplex = require "duplex"
local RESULT = ...
local results = {}
local function put(k, v) results[k] = v end
local function ser(v)
  if type(v) == "string" then return string.format("%q", v) end
  if type(v) ~= "table" then return tostring(v) end
  local parts = {}
  for k, x in pairs(v) do parts[#parts + 1] = "[" .. ser(k) .. "] = " .. ser(x) end
  return "{ " .. table.concat(parts, ", ") .. " }"
end
local function finish()
  local f = assert(io.open(RESULT .. ".part", "w"))
  f:write("return ", ser(results), "\n")
  f:close()
  assert(os.rename(RESULT .. ".part", RESULT))
end
local pack = table.pack or function(...) return { n = select("#", ...), ... } end
local unpack = table.unpack or unpack
-- fd's file status flags (octal, from /proc/self/fdinfo), or nil if closed
local function flags(fd)
  local f = io.open("/proc/self/fdinfo/" .. fd)
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("flags:%s*(%d+)"), 8)
end
local O_NONBLOCK = 2048               -- 04000
local function nonblock(fd)
  local fl = flags(fd)
  if fl == nil then return "closed" end
  return math.floor(fl / O_NONBLOCK) % 2 == 1
end
local function status(field)
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("*a")
  f:close()
  return s:match("\n" .. field .. ":%s*(%x+)")
end
]==]

-- Run `script` (PRELUDE prepended) as a child: `shell` is a /bin/sh command
-- in which the word CHILD stands for the child's command line (so pipes and
-- redirections can be put around it) and DIR for a directory of its own. Waits for the shell to end (at most
-- `limit` s) and returns the child's results table (nil if it wrote none),
-- plus the shell's exit status and the child's stderr.
local function run_child(script, shell, limit)
  local dir = mktemp_dir("stream")
  defer(function() helpers.execute("rm -rf " .. quote(dir)) end)
  spit(dir .. "/child.lua", PRELUDE .. script)
  local cmdline = helpers.lua .. " " .. dir .. "/child.lua " .. dir .. "/result 2>>" .. dir .. "/err"
  local full = shell:gsub("CHILD", function() return cmdline end):gsub("DIR", dir)
  local out, _, _, code = helpers.readall("timeout -k 2 " .. (limit or 20) .. " sh -c "
    .. quote(full) .. " </dev/null 2>>" .. dir .. "/err")
  local text = slurp(dir .. "/result")
  local results = text and assert(helpers.load(text, "results", {}))()
  return results, code, slurp(dir .. "/err") or "", out, dir
end

describe("duplex.stream over pipes (in child processes)", function()
  after_each(run_cleanups)

  it("reads yield inside tasks; read formats and several formats in one call", function()
    local r, code, err = run_child([[
local s = duplex.stream(0)
put("tostring", tostring(s))
put("nonblock", nonblock(0))
duplex.run(function()
  local ticks, stop = 0, false
  local ticker = duplex.spawn(function()
    while not stop and ticks < 2000 do
      duplex.sleep(0.005)
      ticks = ticks + 1
    end
  end)
  s:settimeout(10)
  put("l", pack(s:read("l")))
  put("L", pack(s:read("L")))
  local before = ticks
  local t0 = duplex.now()
  put("slow", pack(s:read("l")))           -- sent 0.3 s later by the shell
  put("waited", duplex.now() - t0)
  put("ticks", ticks - before)             -- the ticker ran meanwhile
  put("n", pack(s:read(4)))
  put("multi", pack(s:read(1, "l", 0)))
  put("a", pack(s:read("a")))
  put("eof", pack(s:read("l")))
  put("eof_a", pack(s:read("a")))
  put("eof_0", pack(s:read(0)))
  stop = true
  ticker:join(5)
end)
s:close()
put("after", nonblock(0))
put("closed", tostring(s))
finish()
]], [[(printf 'one\r\ntwo\n'; sleep 0.3; printf 'three\nrest'; printf 'xy\nlast'; sleep 0.1;]]
    .. [[ printf ' of it\n') | CHILD]])
    assert.equal(0, code, err)
    assert.is_table(r, err)
    assert.equal("duplex.client (fd 0)", r.tostring)
    assert.is_true(r.nonblock)
    assert.same({ n = 1, "one" }, r.l)
    assert.same({ n = 1, "two\n" }, r.L)
    assert.same({ n = 1, "three" }, r.slow)
    assert.is_true(r.waited > 0.1, "the read did not wait: " .. r.waited)
    assert.is_true(r.ticks >= 3, "the other task ticked " .. r.ticks .. " times")
    assert.same({ n = 1, "rest" }, r.n)
    assert.same({ n = 3, "x", "y", "" }, r.multi)
    assert.same({ n = 1, "last of it\n" }, r.a)
    assert.same({ n = 1 }, r.eof)
    assert.same({ n = 1, "" }, r.eof_a)
    assert.same({ n = 1 }, r.eof_0)
    assert.is_false(r.after)               -- O_NONBLOCK put back
    assert.equal("duplex.client (closed)", r.closed)
    assert.equal("", err)
  end)

  -- (the child reads with lines() in a task: not on PUC 5.1)

  it("echoes lines between two tasks over its stdin and stdout, driven through a socket #yields_in_pcall", function()
    if not helpers.execute("command -v socat >/dev/null 2>&1") then
      pending("socat is not installed")
      return
    end
    local srv, port = helpers.server()
    defer(function() srv:close() end)
    local dir = mktemp_dir("stream")
    defer(function() helpers.execute("rm -rf " .. quote(dir)) end)
    -- the child: fd 0 and 1 are pipes (socat's `pipes`), each in a stream
    spit(dir .. "/child.lua", PRELUDE .. [[
local function kind(fd)
  local p = io.popen("readlink /proc/" .. status("Pid") .. "/fd/" .. fd)
  local s = p:read("*l")
  p:close()
  return s and s:match("^(%a+):") or s
end
local kinds = { kind(0), kind(1) }
duplex.run(function()
  local input, output = duplex.stream(0), duplex.stream(1)
  local q = duplex.queue(4)
  local writer = duplex.spawn(function()
    for _ = 1, 1e6 do
      local line = q:get(10)
      if not line or line == "" then break end
      assert(output:write(line:upper(), "\n"))
    end
  end)
  output:write("hello from ", kinds[1], " and ", kinds[2], "\n")
  for line in input:lines() do assert(q:put(line, 10)) end
  q:put("", 10)
  writer:join(10)
  input:close()
  output:close()
end)
]])
    spit(dir .. "/run.sh", "exec " .. helpers.lua .. " " .. dir .. "/child.lua " .. dir
      .. "/result 2>" .. dir .. "/err\n")
    local proc = helpers.spawn_process(("timeout -k 2 20 socat TCP:127.0.0.1:%d EXEC:'sh %s/run.sh',pipes"
      .. " 2>%s/socat.err"):format(port, dir, dir))
    defer(function() proc:close() end)
    local c = assert(srv:accept(10))
    defer(function() c:close() end)
    c:settimeout(10)
    assert.equal("hello from pipe and pipe", c:read("l"))
    for i = 1, 50 do
      assert(c:write("line ", i, " ", ("x"):rep(i * 37), "\n"))
      assert.equal(("LINE %d %s"):format(i, ("X"):rep(i * 37)), c:read("l"))
    end
    assert(c:write("no newline at the end"))
    assert(c:shutdown("w"))
    assert.equal("NO NEWLINE AT THE END\n", c:read("a"))
    assert.same({ true, "exit", 0 }, { proc:wait(10) })
    assert.equal("", slurp(dir .. "/err") or "")
  end)

  it("a write to a pipe whose reader is gone returns nil, msg, \"EPIPE\"; no SIGPIPE", function()
    local r, _, err, _, dir = run_child([[
put("ign_before", status("SigIgn"))
put("blk_before", status("SigBlk"))
local s = duplex.stream(1)
-- the reader (`true`) exits at once; write until the pipe says so
local res
for _ = 1, 500 do
  res = pack(s:write("x"))
  if not res[1] then break end
  duplex.sleep(0.01)
end
put("write", res)
put("again", pack(s:write("more", "data")))
duplex.run(function()
  put("in_task", pack(s:write("from a task")))
end)
put("pending", status("SigPnd") .. " " .. status("ShdPnd"))
put("ign_after", status("SigIgn"))
put("blk_after", status("SigBlk"))
s:close()
finish()
]], [[{ CHILD; echo $? >DIR/rc; } | true]])
    assert.is_table(r, err)
    assert.equal("0\n", slurp(dir .. "/rc"))    -- not 141: no SIGPIPE killed it
    local function check(res)
      assert.equal(nil, res[1])
      assert.equal("EPIPE", res[3])
      assert.matches("Broken pipe", res[2], 1, true)
      assert.equal(0, res[4])
    end
    check(r.write)
    check(r.again)
    check(r.in_task)
    -- no SIGPIPE left pending, the mask and ignored set as they were
    local p1, p2 = r.pending:match("^(%x+) (%x+)$")
    assert.is_false(helpers.hexbit(p1, 12), "SIGPIPE pending")
    assert.is_false(helpers.hexbit(p2, 12), "SIGPIPE pending")
    assert.equal(r.ign_before, r.ign_after)
    assert.equal(r.blk_before, r.blk_after)
    assert.equal("", err)
  end)

  it("close puts O_NONBLOCK back as it was, closes fds above 2 unless opts.close == false", function()
    local r, code, err = run_child([[
local out = {}
-- fd 3, 4, 5 and 6: duplicates of the stdin pipe (blocking), made by the shell
for _, fd in ipairs { 0, 3, 4, 5, 6 } do out["before" .. fd] = nonblock(fd) end

local s3 = duplex.stream(3)
out.during3 = nonblock(3)
out.tostring3 = tostring(s3)
out.read3 = s3:read(3)
out.close3 = s3:close()
out.after3 = nonblock(3)              -- "closed"
out.again3 = s3:close()               -- idempotent

local s4 = duplex.stream(4, { close = false })
out.during4 = nonblock(4)
s4:close()
out.after4 = nonblock(4)              -- open, blocking again

local s5 = duplex.stream(5, { close = true })
out.during5 = nonblock(5)
s5 = nil
collectgarbage(); collectgarbage()
out.gc5 = nonblock(5)                 -- collected: closed like close()

local s0 = duplex.stream(0)           -- 0-2: kept by default
s0:close()
out.after0 = nonblock(0)

local s2 = duplex.stream(2)
out.during2 = nonblock(2)
s2:close()
out.after2 = nonblock(2)

local s6 = duplex.stream(6, { close = true })
local s6b = duplex.stream(0, { close = true })   -- even 0 when asked
s6:close(); s6b:close()
out.after6, out.after0b = nonblock(6), nonblock(0)
for k, v in pairs(out) do put(k, v) end
finish()
]], [[printf 'abcdef' | CHILD 3<&0 4<&0 5<&0 6<&0]])
    assert.equal(0, code, err)
    assert.is_table(r, err)
    assert.same({
      before0 = false, before3 = false, before4 = false, before5 = false, before6 = false,
      during3 = true, tostring3 = "duplex.client (fd 3)", read3 = "abc", close3 = true,
      after3 = "closed", again3 = true,
      during4 = true, after4 = false,
      during5 = true, gc5 = "closed",
      after0 = false,
      during2 = true, after2 = false,
      after6 = "closed", after0b = "closed",
    }, r)
    assert.equal("", err)
  end)

  it("a descriptor that was non-blocking already stays so after close (python3 makes it)", function()
    if not helpers.execute("command -v python3 >/dev/null 2>&1") then
      pending("python3 is not installed")
      return
    end
    local dir = mktemp_dir("stream")
    defer(function() helpers.execute("rm -rf " .. quote(dir)) end)
    spit(dir .. "/child.lua", PRELUDE .. [[
local fd = tonumber(arg[2])
put("before", nonblock(fd))
local s = duplex.stream(fd)
put("tostring", tostring(s))
put("read", pack(s:read("a")))
s:close()
put("after", nonblock(fd))           -- closed: fd > 2
local s2 = duplex.stream(0, { close = false })
put("before0", nonblock(0))
s2:close()
put("after0", nonblock(0))           -- stdin was made non-blocking by python: still so
finish()
]])
    spit(dir .. "/spawn.py", ([[
import os, subprocess, sys
r, w = os.pipe()
os.set_blocking(r, False)
r2, w2 = os.pipe()
os.set_blocking(r2, False)
os.write(w, b"from python")
os.close(w)
os.close(w2)
p = subprocess.run(sys.argv[1:] + [str(r)], pass_fds=[r], stdin=r2)
sys.exit(p.returncode)
]]))
    local cmd = ("timeout -k 2 20 python3 %s/spawn.py sh -c %s sh %s/result"):format(dir,
      quote(helpers.lua .. ' ' .. dir .. '/child.lua "$@"'), dir)
    local _, _, _, code = helpers.readall(cmd .. " 2>" .. dir .. "/err")
    local err = slurp(dir .. "/err") or ""
    assert.equal(0, code, err)
    local r = assert(helpers.load(assert(slurp(dir .. "/result"), err), "r", {}))()
    assert.is_true(r.before)
    assert.matches("^duplex%.client %(fd %d+%)$", r.tostring)
    assert.same({ n = 1, "from python" }, r.read)
    assert.equal("closed", r.after)
    assert.is_true(r.before0)
    assert.is_true(r.after0)
  end)
end)

describe("duplex.stream arguments (in this process)", function()
  after_each(run_cleanups)
  helpers.track_fds()

  -- A descriptor number nothing has open here.
  local function closed_fd()
    for fd = 900, 1000 do
      if not io.open("/proc/self/fdinfo/" .. fd) then return fd end
    end
    error("no closed descriptor in 900-1000")
  end

  it("a descriptor that is not open gives nil, msg, \"EBADF\"", function()
    local fd = closed_fd()
    assert.same({ nil, ("stream fd %d: Bad file descriptor"):format(fd), "EBADF" },
      { duplex.stream(fd) })
    assert.same({ nil, ("stream fd %d: Bad file descriptor"):format(fd), "EBADF" },
      { duplex.stream(fd, { close = false }) })
  end)

  it("raises for unknown options and bad arguments, touching no descriptor", function()
    -- called as the user would (not through pcall directly, which leaves
    -- luaL to find a name for the function in package.loaded)
    local function raises(want, ...)
      local args = pack(...)
      local ok, err = pcall(function()
        local s = duplex.stream(unpack(args, 1, args.n))
        return s
      end)
      assert.is_false(ok)
      assert.equal(want, (err:gsub("^[^:]*:%d+: ", "")))   -- where: this file
    end
    raises("bad argument #2 to 'stream' (unknown option 'bogus')", 0, { bogus = true })
    raises("bad argument #2 to 'stream' (unknown option 'timeout')", closed_fd(), { timeout = 1 })
    raises("bad argument #2 to 'stream' (option 'close' must be a boolean)", 0, { close = 1 })
    raises("bad argument #2 to 'stream' (table expected, got string)", 0, "close")
    raises("bad argument #1 to 'stream' (not a descriptor number)", -1)
    raises("bad argument #1 to 'stream' (number has no integer representation)", 1.5)
    raises("bad argument #1 to 'stream' (number expected, got no value)")
  end)
end)

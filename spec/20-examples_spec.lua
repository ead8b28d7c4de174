-- 20-examples_spec.lua: every program in examples/ run as a real process, on
-- loopback and port 0 (servers print "listening HOST PORT"; we read the port).
-- Each test kills only the processes it started, and every wait has a deadline.

local duplex = require "duplex"
local helpers = require "spec.helpers"
local pack, unpack = helpers.pack, helpers.unpack
local slurp, spit, mktemp_dir = helpers.slurp, helpers.spit, helpers.mktemp_dir

local quote = helpers.shquote

-- the shell command for one example; `timeout` bounds its life even if we crash
local function command(script, args, limit)
  local words = {}
  for i, a in ipairs(args or {}) do words[i] = quote(a) end
  return "timeout --foreground -k 2 " .. (limit or 60) .. " " .. helpers.lua
      .. " examples/" .. script .. " " .. table.concat(words, " ")
end




local function lines_of(s)
  local t = {}
  for line in s:gmatch("([^\n]*)\n") do t[#t + 1] = line end
  return t
end

-- Run an example to its end: { code = exit status, out = stdout, err = stderr }.
local function run(script, args, stdin_file)
  local d = mktemp_dir("examples")
  local cmd = command(script, args, 30) .. " <" .. (stdin_file or "/dev/null")
           .. " 2>" .. d .. "/err"
  local out, _, _, code = helpers.readall(cmd)
  local err = slurp(d .. "/err")
  helpers.execute("rm -rf " .. quote(d))
  return { code = code, out = out, err = err }
end

-- Background processes: each runs in a process group of its own (setsid, so
-- stop() reaches the interpreter under `timeout`), with its stdout, stderr
-- and exit status in files; the pipe of io.popen is only there to reap it.
local started = {}

local function start(script, args)
  local d = mktemp_dir("examples")
  local inner = command(script, args) .. " >" .. d .. "/out 2>" .. d .. "/err; echo $? >" .. d .. "/rc"
  local pipe = io.popen("echo $$; exec setsid sh -c " .. quote(inner) .. " </dev/null 2>/dev/null")
  local pid = helpers.tointeger(tonumber(pipe:read("*l")))
  assert(pid and pid > 1, "could not start " .. script)
  local proc = { pid = pid, dir = d, script = script, pipe = pipe }
  started[#started + 1] = proc
  return proc
end

local function output(proc) return slurp(proc.dir .. "/out") or "" end
local function errors(proc) return slurp(proc.dir .. "/err") or "" end

local function describe_proc(proc)
  return ("%s (pid %d)\nstdout:\n%s\nstderr:\n%s"):format(proc.script, proc.pid,
    output(proc), errors(proc))
end

-- wait until the process's stdout matches `pattern`; returns the captures
local function wait_output(proc, pattern, seconds)
  local deadline = duplex.now() + (seconds or 10)
  repeat
    local caps = { output(proc):match(pattern) }
    if caps[1] then return unpack(caps) end
    duplex.sleep(0.02)
  until duplex.now() > deadline
  error("timed out waiting for " .. pattern .. " from " .. describe_proc(proc), 2)
end

local function wait_listening(proc)
  local host, port = wait_output(proc, "^listening (%S+) (%d+)\n")
  return host, helpers.tointeger(tonumber(port))
end

-- wait for the process to exit by itself; returns its exit status
local function wait_exit(proc, seconds)
  local deadline = duplex.now() + (seconds or 10)
  repeat
    local rc = slurp(proc.dir .. "/rc")
    if rc and rc:match("^%d+\n$") then return helpers.tointeger(tonumber(rc)) end
    duplex.sleep(0.02)
  until duplex.now() > deadline
  error("timed out waiting for the exit of " .. describe_proc(proc), 2)
end

local function alive(pid)
  local stat = slurp("/proc/" .. pid .. "/stat")
  return stat ~= nil and stat:match("^%d+ %b() (%a)") ~= "Z"
end

-- Stop a process we started: TERM to the children of the shell that leads its
-- group (`timeout`, which passes TERM on to the interpreter), so the shell
-- reaps them and exits, and we reap the shell; KILL the group if that lags.
-- (No `ps`: it hangs under `make asan`'s LD_PRELOAD.)
local function stop(proc)
  if not proc.pipe then return end
  if alive(proc.pid) then
    local children = slurp(("/proc/%d/task/%d/children"):format(proc.pid, proc.pid))
    if children and children:match("%d") then
      for pid in children:gmatch("%d+") do helpers.execute("kill -TERM " .. pid .. " 2>/dev/null") end
    else
      helpers.execute("kill -TERM -" .. proc.pid .. " 2>/dev/null")
    end
    local deadline = duplex.now() + 2
    while alive(proc.pid) and duplex.now() < deadline do duplex.sleep(0.02) end
    if alive(proc.pid) then helpers.execute("kill -KILL -" .. proc.pid .. " 2>/dev/null") end
  end
  proc.pipe:close()   -- reaps the shell
  proc.pipe = nil
  helpers.execute("rm -rf " .. quote(proc.dir))
end

-- a port on which nothing listens (the kernel just gave it to us)
local function free_port()
  local s = assert(duplex.listen("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return port
end

-- `n` bytes of binary data: every byte value, NULs, "\r\n" and "\n" included
local function binary(n, seed)
  local parts, x = {}, seed or 12345
  for i = 1, math.floor(n / 4) do
    x = helpers.lcg(x)                          -- (x * 1103515245 + 12345) % 2^31
    parts[i] = helpers.le(i % 7 == 0 and 0 or x, 4)
  end
  local s = table.concat(parts) .. ("\0\r\n\n"):sub(1, n % 4)
  return s:sub(1, n)
end

describe("examples", function()
  local tmp

  before_each(function()
    tmp = mktemp_dir("examples")
  end)

  after_each(function()
    for i = #started, 1, -1 do
      stop(started[i])
      started[i] = nil
    end
    helpers.execute("rm -rf " .. quote(tmp))
  end)

  helpers.track_fds()   -- after our after_each, which closes what we started

  describe("echo_server.lua and echo_client.lua", function()
    it("echo each line, one client after another; the server exits after N clients", function()
      local server = start("echo_server.lua", { "127.0.0.1", 0, 2 })
      local host, port = wait_listening(server)
      assert.equal("127.0.0.1", host)

      local r = run("echo_client.lua", { host, port, "hello", "wörld", "", "a b\tc" })
      assert.same({ code = 0, out = "hello\nwörld\n\na b\tc\n", err = "" }, r)

      -- a person's way: lines on stdin
      spit(tmp .. "/in", "first\nsecond line\n")
      r = run("echo_client.lua", { host, port }, tmp .. "/in")
      assert.same({ code = 0, out = "first\nsecond line\n", err = "" }, r)

      assert.equal(0, wait_exit(server))
      local out = lines_of(output(server))
      assert.equal(5, #out, describe_proc(server))
      assert.equal("listening 127.0.0.1 " .. port, out[1])
      assert.matches("^client 1 from 127%.0%.0%.1 %d+$", out[2])
      assert.equal("client 1 done, 4 lines echoed", out[3])
      assert.matches("^client 2 from 127%.0%.0%.1 %d+$", out[4])
      assert.equal("client 2 done, 2 lines echoed", out[5])
      assert.equal("", errors(server))
    end)

    it("the server sends back a last line without newline as it came, then closes", function()
      local own = helpers.scope(); finally(own.close)
      local server = start("echo_server.lua", { "127.0.0.1", 0, 1 })
      local host, port = wait_listening(server)
      local c = own(assert(duplex.connect(host, port, { timeout = 5 })))
      c:settimeout(5)
      assert(c:write("one\r\ntwo\n", "no newline"))
      assert(c:shutdown("w"))
      assert.equal("one\r\ntwo\nno newline", c:read("a"))
      assert.is_nil(c:read("l"))
      assert.equal(0, wait_exit(server))
      assert.matches("client 1 done, 3 lines echoed\n$", output(server))
    end)

    it("work over a Unix domain socket too", function()
      local path = tmp .. "/echo.sock"
      local server = start("echo_server.lua", { "unix:" .. path, 0, 1 })
      assert.equal("unix:" .. path, wait_output(server, "^listening (%S+)\n"))
      local r = run("echo_client.lua", { "unix:" .. path, "-", "over", "unix" })
      assert.same({ code = 0, out = "over\nunix\n", err = "" }, r)
      assert.equal(0, wait_exit(server))
      assert.equal("listening unix:" .. path .. "\nclient 1 from a unix socket\n"
                   .. "client 1 done, 2 lines echoed\n", output(server))
    end)

    it("the client reports a refused connection and exits 1", function()
      local r = run("echo_client.lua", { "127.0.0.1", free_port(), "x" })
      assert.equal(1, r.code)
      assert.equal("", r.out)
      assert.matches("^connect 127%.0%.0%.1:%d+: Connection refused\n$", r.err)
    end)

    it("the client explains its usage", function()
      local r = run("echo_client.lua", {})
      assert.equal(2, r.code)
      assert.matches("^usage: echo_client%.lua", r.err)
    end)
  end)

  describe("peer.lua", function()
    local function expected(name, other, n)
      local t = {}
      for i = 1, n do t[i] = ("%s got: %s says hello #%d\n"):format(name, other, i) end
      t[n + 1] = ("%s: sent %d lines, received %d\n"):format(name, n, n)
      return table.concat(t)
    end

    -- peer.lua reads with client:lines() in a task: not on PUC 5.1 (#yields_in_pcall)
    it("two processes each listen and connect, and exchange lines both ways #yields_in_pcall", function()
      local a = start("peer.lua", { "A", tmp .. "/a.port", tmp .. "/b.port", 7 })
      local b = start("peer.lua", { "B", tmp .. "/b.port", tmp .. "/a.port", 7 })
      assert.equal(0, wait_exit(a, 20), describe_proc(a))
      assert.equal(0, wait_exit(b, 20), describe_proc(b))
      assert.equal(expected("A", "B", 7), output(a))
      assert.equal(expected("B", "A", 7), output(b))
      assert.equal("", errors(a))
      assert.equal("", errors(b))
      -- each removes its port file once the other has connected
      assert.is_nil(io.open(tmp .. "/a.port"))
      assert.is_nil(io.open(tmp .. "/b.port"))
    end)

    it("copes with a late peer and a port file left over from an earlier run #yields_in_pcall", function()
      -- stale: refused. Port 1, not a port found free now: a suite running
      -- beside this one (CI runs two) may listen on that one meanwhile, and A
      -- then connects there and B waits for A for ever (seen on LuaJIT).
      spit(tmp .. "/b.port", "127.0.0.1 1\n")
      local a = start("peer.lua", { "A", tmp .. "/a.port", tmp .. "/b.port", 200 })
      duplex.sleep(0.3)         -- A runs first, connecting in vain; B then replaces the file
      local b = start("peer.lua", { "B", tmp .. "/b.port", tmp .. "/a.port", 200 })
      assert.equal(0, wait_exit(a, 20), describe_proc(a))
      assert.equal(0, wait_exit(b, 20), describe_proc(b))
      assert.equal(expected("A", "B", 200), output(a))
      assert.equal(expected("B", "A", 200), output(b))
    end)
  end)

  describe("ftp_server.lua and ftp_client.lua", function()
    local root, server, host, port

    before_each(function()
      root = tmp .. "/root"
      assert(helpers.execute("mkdir " .. quote(root)))
      server = start("ftp_server.lua", { root, "127.0.0.1", 0 })
      host, port = wait_listening(server)
    end)

    it("put uploads a binary file (over 1 MiB, NUL bytes) byte for byte", function()
      local data = binary(1536 * 1024 + 3, 1)
      assert.truthy(data:find("\0", 1, true))
      spit(tmp .. "/up.bin", data)
      local r = run("ftp_client.lua", { host, port, "put", tmp .. "/up.bin", "stored.bin" })
      assert.same({ code = 0, err = "",
        out = ("put %s/up.bin -> stored.bin: %d bytes\n"):format(tmp, #data) }, r)
      local stored = slurp(root .. "/stored.bin")
      assert.equal(#data, #stored)
      assert.is_true(data == stored, "uploaded bytes differ")
      assert.is_nil(io.open(root .. "/stored.bin.part"))
    end)

    it("get downloads a binary file byte for byte, and size reports its size", function()
      local data = binary(1024 * 1024 + 1, 2)
      spit(root .. "/big file.bin", data)
      local r = run("ftp_client.lua", { host, port, "size", "big file.bin" })
      assert.same({ code = 0, err = "", out = "big file.bin: " .. #data .. " bytes\n" }, r)

      r = run("ftp_client.lua", { host, port, "get", tmp .. "/down.bin", "big file.bin" })
      assert.same({ code = 0, err = "",
        out = ("got big file.bin -> %s/down.bin: %d bytes\n"):format(tmp, #data) }, r)
      local got = slurp(tmp .. "/down.bin")
      assert.equal(#data, #got)
      assert.is_true(data == got, "downloaded bytes differ")
    end)

    it("round-trips a file both ways, and an empty file", function()
      local data = binary(1024 * 1024 + 2, 3)
      spit(tmp .. "/a.bin", data)
      spit(tmp .. "/empty", "")
      assert.equal(0, run("ftp_client.lua", { host, port, "put", tmp .. "/a.bin", "a" }).code)
      assert.equal(0, run("ftp_client.lua", { host, port, "get", tmp .. "/b.bin", "a" }).code)
      assert.is_true(slurp(tmp .. "/b.bin") == data, "round trip changed the bytes")
      assert.equal(0, run("ftp_client.lua", { host, port, "put", tmp .. "/empty", "e" }).code)
      assert.equal(0, run("ftp_client.lua", { host, port, "get", tmp .. "/e2", "e" }).code)
      assert.equal("", slurp(root .. "/e"))
      assert.equal("", slurp(tmp .. "/e2"))
    end)

    it("refuses names with / or .., and missing files", function()
      spit(tmp .. "/secret", "do not serve me")
      local r = run("ftp_client.lua", { host, port, "get", tmp .. "/x", "../secret" })
      assert.same({ code = 1, out = "", err = "ftp_client: server: ERR bad file name\n" }, r)
      r = run("ftp_client.lua", { host, port, "get", tmp .. "/x", tmp .. "/secret" })
      assert.same({ code = 1, out = "", err = "ftp_client: server: ERR bad file name\n" }, r)
      r = run("ftp_client.lua", { host, port, "size", "missing" })
      assert.same({ code = 1, out = "", err = "ftp_client: server: ERR cannot open missing\n" }, r)
      r = run("ftp_client.lua", { host, port, "put", tmp .. "/secret", "../escaped" })
      assert.same({ code = 1, out = "", err = "ftp_client: server: ERR bad file name\n" }, r)
      assert.is_nil(io.open(tmp .. "/escaped"))
      assert.is_nil(io.open(tmp .. "/x"))
    end)

    it("keeps the protocol in step after a refused PUT (speaking it directly)", function()
      local own = helpers.scope(); finally(own.close)
      spit(root .. "/hello.txt", "hello\n")
      local c = own(assert(duplex.connect(host, port, { timeout = 5 })))
      c:settimeout(5)
      assert(c:write("PUT ../evil 6\nabc\0\n\n", "SIZE hello.txt\n", "GET hello.txt\n",
                     "FROB\n", "QUIT\n"))
      assert.equal("ERR bad file name", c:read("l"))
      assert.equal("OK 6", c:read("l"))
      assert.equal("OK 6", c:read("l"))
      assert.equal("hello\n", c:read(6))
      assert.equal("ERR unknown command", c:read("l"))
      assert.equal("OK bye", c:read("l"))
      assert.equal("", c:read("a"))        -- the server hung up after QUIT
      assert.is_nil(io.open(tmp .. "/evil"))

      local log = output(server)
      assert.matches("\n127%.0%.0%.1:%d+ connected\n", log)
      assert.matches("\n127%.0%.0%.1:%d+ PUT %.%./evil 6\n", log)
      assert.matches("\n127%.0%.0%.1:%d+ SIZE hello%.txt\n", log)
      wait_output(server, "\n127%.0%.0%.1:%d+ gone\n")
    end)

    it("serves clients at the same time", function()
      local own = helpers.scope(); finally(own.close)
      local c1 = own(assert(duplex.connect(host, port, { timeout = 5 })))
      local c2 = own(assert(duplex.connect(host, port, { timeout = 5 })))
      c1:settimeout(5); c2:settimeout(5)
      spit(root .. "/f", "12345")
      assert(c1:write("PUT g 4\nab"))      -- c1 is in the middle of an upload...
      assert(c2:write("GET f\n"))          -- ...while c2 downloads
      assert.equal("OK 5", c2:read("l"))
      assert.equal("12345", c2:read(5))
      assert(c1:write("cd"))
      assert.equal("OK 4", c1:read("l"))
      assert.equal("abcd", slurp(root .. "/g"))
    end)
  end)

  describe("chat_server.lua", function()
    it("sends each line to every other client, never back to its sender", function()
      local server = start("chat_server.lua", { "127.0.0.1", 0 })
      local host, port = wait_listening(server)
      local c, name = {}, {}
      local function join(i)
        c[i] = assert(duplex.connect(host, port, { timeout = 5 }))
        c[i]:settimeout(5)
        local h, p = c[i]:getsockname()
        name[i] = h .. ":" .. p
        -- the greeting comes once the client is in the room
        assert.equal(("welcome %s, %d others here"):format(name[i], i - 1), c[i]:read("l"))
      end
      finally(function() for i = 1, 3 do if c[i] then c[i]:close() end end end)

      join(1)
      join(2)
      assert.equal("* " .. name[2] .. " joined", c[1]:read("l"))
      join(3)
      assert.equal("* " .. name[3] .. " joined", c[1]:read("l"))
      assert.equal("* " .. name[3] .. " joined", c[2]:read("l"))

      assert(c[1]:write("hello, room\n"))
      assert.equal(name[1] .. ": hello, room", c[2]:read("l"))
      assert.equal(name[1] .. ": hello, room", c[3]:read("l"))
      c[1]:settimeout(0.3)
      local line, _, code = c[1]:read("l")
      assert.is_nil(line)
      assert.equal("ETIMEDOUT", code)
      c[1]:settimeout(5)

      assert(c[2]:write("hi\n", "how are you\n"))
      assert.equal(name[2] .. ": hi", c[1]:read("l"))  -- the next thing c1 sees
      assert.equal(name[2] .. ": how are you", c[1]:read("l"))
      assert.equal(name[2] .. ": hi", c[3]:read("l"))
      assert.equal(name[2] .. ": how are you", c[3]:read("l"))

      c[3]:close()
      assert.equal("* " .. name[3] .. " left", c[1]:read("l"))
      assert.equal("* " .. name[3] .. " left", c[2]:read("l"))

      assert.same({
        "listening 127.0.0.1 " .. port,
        name[1] .. " joined", name[2] .. " joined", name[3] .. " joined",
        name[3] .. " left",
      }, lines_of(wait_output(server, "^(.* left\n)")))
      assert.equal("", errors(server))
    end)

    -- A stalled client (connected, never reading, normal buffers) fills its
    -- socket buffers after some MB; the two active clients exchange 8 KB
    -- lines both ways meanwhile (at most WINDOW in flight each way) and must
    -- get each line of the other's within LATENCY s of its sending, until
    -- the server has disconnected the stalled one (its queue full: proof that
    -- its buffers were) and a little after.
    it("a client that never reads holds up nobody, and is disconnected once its queue is full", function()
      local WINDOW, LATENCY, AFTER, MAX_BYTES = 16, 2, 100, 96 * 1024 * 1024
      local server = start("chat_server.lua", { "127.0.0.1", 0 })
      local host, port = wait_listening(server)
      local conns = {}
      finally(function() for _, c in pairs(conns) do c:close() end end)
      local function join(tag, others)
        local c = assert(duplex.connect(host, port, { timeout = 5 }))
        conns[tag] = c
        c:settimeout(5)
        local h, p = c:getsockname()
        local name = h .. ":" .. p
        if others then
          assert.equal(("welcome %s, %d others here"):format(name, others), c:read("l"))
        end
        return c, name
      end
      local _, sname = join("stalled")            -- reads nothing, ever
      wait_output(server, "\n" .. sname:gsub("%p", "%%%0") .. " joined\n")
      local a, aname = join("a", 1)
      local b, bname = join("b", 2)
      assert.equal("* " .. bname .. " joined", a:read("l"))
      local kicked_line = sname .. " is not reading; disconnected\n"

      local filler = ("x"):rep(8000)
      local stats = { worst = 0, bytes = 0, kicked_at = nil }
      local function text(tag, i) return ("%s %06d %s"):format(tag, i, filler) end

      duplex.run(function()
        local sides = {
          { tag = "A", c = a, name = aname, sent = 0, at = {} },
          { tag = "B", c = b, name = bname, sent = 0, at = {} },
        }
        sides[1].peer, sides[2].peer = sides[2], sides[1]
        local kicked, stop_at = false, nil
        local tasks = {}
        for _, s in ipairs(sides) do
          s.got, s.left_seen, s.progress = 0, 0, duplex.cond()   -- got: of the peer's lines
          -- writer: the next line when fewer than WINDOW are in flight
          tasks[#tasks + 1] = duplex.spawn(function()
            while not stop_at or s.sent < stop_at do
              while s.sent - s.peer.got >= WINDOW do
                assert(s.peer.progress:wait(10), s.tag .. ": the other side got nothing for 10 s")
              end
              s.sent = s.sent + 1
              s.at[s.sent] = duplex.now()
              assert(s.c:write(text(s.tag, s.sent), "\n"))
              stats.bytes = stats.bytes + #filler + 8
              if not kicked and s.sent % 16 == 0 then
                if output(server):find(kicked_line, 1, true) then
                  kicked = true
                  stats.kicked_at = stats.bytes
                  stop_at = math.max(sides[1].sent, sides[2].sent) + AFTER
                end
                assert(stats.bytes < MAX_BYTES, "the stalled client was never disconnected")
              end
            end
          end)
          -- reader: the peer's lines, in order, each in time
          tasks[#tasks + 1] = duplex.spawn(function()
            local peer = s.peer
            while not (stop_at and s.got >= stop_at) do
              local line = assert(s.c:read("l"))
              if line == "* " .. sname .. " left" then
                s.left_seen = s.left_seen + 1
              else
                local want = peer.name .. ": " .. text(peer.tag, s.got + 1)
                assert(line == want, ("%s: line %d is wrong: %s"):format(s.tag, s.got + 1, line:sub(1, 60)))
                s.got = s.got + 1
                local late = duplex.now() - peer.at[s.got]
                if late > stats.worst then stats.worst = late end
                assert(late < LATENCY, ("%s got line %d of %s %.2f s after it was sent")
                  :format(s.tag, s.got, peer.tag, late))
                s.progress:broadcast()
              end
            end
          end)
        end
        for _, t in ipairs(tasks) do
          local ok, err = t:join(60)
          assert(ok, err)
        end
        for _, s in ipairs(sides) do
          assert.equal(1, s.left_seen, s.tag .. " saw the stalled client leave once")
          assert.equal(stop_at, s.got)
        end
      end)
      assert.is_truthy(stats.kicked_at)
      assert.matches("\n" .. sname:gsub("%p", "%%%0") .. " is not reading; disconnected\n"
        .. sname:gsub("%p", "%%%0") .. " left\n", output(server))
      assert.equal("", errors(server))
    end)
  end)

  describe("netcat.lua", function()
    -- A python3 server for one connection, in the background: "echo" sends
    -- back what it gets until end of stream, then closes; "bye" sends "bye\n"
    -- and closes at once; "flood" sends 8 MB, then closes.
    local PY = [[
import socket, sys
mode = sys.argv[1]
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(1)
print("listening", s.getsockname()[1], flush=True)
c, _ = s.accept()
try:
    if mode == "echo":
        while True:
            d = c.recv(65536)
            if not d:
                break
            c.sendall(d)
    elif mode == "bye":
        c.sendall(b"bye\n")
    elif mode == "flood":
        c.sendall(b"z" * (8 << 20))
    c.shutdown(socket.SHUT_WR)
except OSError as e:
    print("server:", e, flush=True)
c.close()
print("done", flush=True)
]]
    local py_procs = {}
    after_each(function()
      for i = #py_procs, 1, -1 do py_procs[i]:close(); py_procs[i] = nil end
    end)

    local function pyserver(mode)
      spit(tmp .. "/server.py", PY)
      local proc = helpers.spawn_process(("timeout -k 2 120 python3 -u %s/server.py %s >%s/py.out 2>&1")
        :format(tmp, mode, tmp))
      py_procs[#py_procs + 1] = proc
      local deadline = duplex.now() + 10
      repeat
        local port = (slurp(tmp .. "/py.out") or ""):match("^listening (%d+)\n")
        if port then return helpers.tointeger(tonumber(port)) end
        duplex.sleep(0.02)
      until duplex.now() > deadline
      error("the python server did not start: " .. (slurp(tmp .. "/py.out") or ""))
    end

    -- Run `sh -c shell` where NETCAT is netcat's command line (to HOST PORT)
    -- and DIR the test's directory; returns its stdout, exit status, seconds.
    local function sh(shell, port)
      local nc = command("netcat.lua", { "127.0.0.1", port }, 30)
      local full = shell:gsub("NETCAT", function() return nc end):gsub("DIR", tmp)
      local t0 = duplex.now()
      local out, _, _, code = helpers.readall("sh -c " .. quote(full) .. " </dev/null")
      return out, code, duplex.now() - t0
    end

    it("copies binary data from piped stdin to an echo server and back to stdout", function()
      if not helpers.execute("command -v python3 >/dev/null 2>&1") then
        pending("python3 is not installed")
        return
      end
      local data = binary(3 * 1024 * 1024 + 5, 7)   -- first: slow under valgrind
      spit(tmp .. "/in", data)
      local port = pyserver("echo")
      local out, code = sh("cat DIR/in | NETCAT 2>DIR/err | cat", port)
      assert.equal("", slurp(tmp .. "/err"), "python server: " .. (slurp(tmp .. "/py.out") or ""))
      assert.equal(0, code)
      assert.equal(#data, #out)
      assert.is_true(out == data, "the bytes came back changed")
      -- the server saw end of stream (our half-close), and closed: done
      assert.equal("listening " .. port .. "\ndone\n", slurp(tmp .. "/py.out"))
    end)

    it("copies both ways at once: the echo reaches stdout while stdin is still open", function()
      if not helpers.execute("command -v python3 >/dev/null 2>&1") then
        pending("python3 is not installed")
        return
      end
      local port = pyserver("echo")
      -- stdin ends only once netcat has written the echo of "ping" to stdout
      -- (or, if it never does, after 10 s, saying so)
      local out, code = sh([[
{ printf 'ping\n'
  i=0
  while [ $i -lt 200 ] && ! grep -q ping DIR/out 2>/dev/null; do sleep 0.05; i=$((i+1)); done
  [ $i -lt 200 ] || printf 'gave up waiting\n'
  printf 'last line, no newline'
} | NETCAT >DIR/out 2>DIR/err; echo $?]], port)
      assert.equal("0\n", out)
      assert.equal("", slurp(tmp .. "/err"), "python server: " .. (slurp(tmp .. "/py.out") or ""))
      assert.equal("ping\nlast line, no newline", slurp(tmp .. "/out"))
    end)

    it("exits when the server ends the connection, though stdin stays open", function()
      if not helpers.execute("command -v python3 >/dev/null 2>&1") then
        pending("python3 is not installed")
        return
      end
      local port = pyserver("bye")
      -- stdin: a pipe that stays open 20 s unless netcat's end kills its writer
      local out, code, took = sh([[
{ sleep 20 & echo $! >DIR/sleep.pid; wait; } |
{ NETCAT >DIR/out 2>DIR/err; echo $? >DIR/rc; kill $(cat DIR/sleep.pid) 2>/dev/null; }]], port)
      assert.equal("", out)
      assert.equal("0\n", slurp(tmp .. "/rc"))
      assert.equal("bye\n", slurp(tmp .. "/out"))
      assert.equal("", slurp(tmp .. "/err"), "python server: " .. (slurp(tmp .. "/py.out") or ""))
      assert.is_true(took < 15, ("took %.1f s: it waited for stdin"):format(took))
    end)

    it("stops quietly, status 0, when nobody reads its stdout any more (no SIGPIPE)", function()
      if not helpers.execute("command -v python3 >/dev/null 2>&1") then
        pending("python3 is not installed")
        return
      end
      local port = pyserver("flood")
      local out = sh("{ NETCAT 2>DIR/err; echo $? >DIR/rc; } | head -c 100", port)
      assert.equal(("z"):rep(100), out)
      assert.equal("0\n", slurp(tmp .. "/rc"))   -- not 141 (SIGPIPE)
      assert.equal("", slurp(tmp .. "/err"), "python server: " .. (slurp(tmp .. "/py.out") or ""))
    end)

    it("on SIGTERM ends with status 143 and gives stdin its blocking mode back", function()
      if not helpers.execute("command -v python3 >/dev/null 2>&1") then
        pending("python3 is not installed")
        return
      end
      local port = pyserver("echo")
      local nc = command("netcat.lua", { "127.0.0.1", port }, 30)
      -- stdin: a pipe that stays open; afterwards, its O_NONBLOCK (shared by
      -- every descriptor of that pipe end) is read from /proc by grep
      local inner = ([[
{ printf 'hi\n'; sleep 20 & echo $! >DIR/sleep.pid; wait; } |
{ exec 3<&0
  NETCAT <&3 >DIR/out 2>DIR/err & echo $! >DIR/nc.pid; wait $!; echo $? >DIR/rc
  grep flags /proc/self/fdinfo/3 >DIR/flags
  kill $(cat DIR/sleep.pid) 2>/dev/null; }]]):gsub("NETCAT", function() return nc end):gsub("DIR", tmp)
      local proc = helpers.spawn_process("sh -c " .. quote(inner))
      py_procs[#py_procs + 1] = proc
      local deadline = duplex.now() + 10
      while slurp(tmp .. "/out") ~= "hi\n" and duplex.now() < deadline do duplex.sleep(0.02) end
      assert.equal("hi\n", slurp(tmp .. "/out"))    -- connected, copying
      local pid = helpers.tointeger(tonumber(slurp(tmp .. "/nc.pid")))
      assert(helpers.execute("kill -TERM " .. pid))
      assert.same({ true, "exit", 0 }, { proc:wait(15) })
      assert.equal("143\n", slurp(tmp .. "/rc"))
      assert.equal("", slurp(tmp .. "/err"), "python server: " .. (slurp(tmp .. "/py.out") or ""))
      local flags = tonumber(slurp(tmp .. "/flags"):match("flags:%s*(%d+)"), 8)
      assert.equal(0, helpers.band(flags, 2048), "stdin was left non-blocking")   -- O_NONBLOCK 04000
    end)

    it("reports a refused connection (status 1) and explains its usage (status 2)", function()
      local r = run("netcat.lua", { "127.0.0.1", free_port() })
      assert.equal(1, r.code)
      assert.equal("", r.out)
      assert.matches("^netcat: connect 127%.0%.0%.1:%d+: Connection refused\n$", r.err)
      r = run("netcat.lua", { "127.0.0.1" })
      assert.same({ code = 2, out = "", err = "usage: netcat.lua HOST PORT\n" }, r)
    end)
  end)

  describe("forward.lua", function()
    local echo, fwd, ehost, eport, fhost, fport

    before_each(function()
      echo = start("echo_server.lua", { "127.0.0.1", 0 })
      ehost, eport = wait_listening(echo)
      fwd = start("forward.lua", { 0, ehost, eport })
      fhost, fport = wait_listening(fwd)
      assert.equal("127.0.0.1", fhost)
      assert.not_equal(eport, fport)
    end)

    it("copies both ways and passes a half-close through", function()
      local own = helpers.scope(); finally(own.close)
      local c = own(assert(duplex.connect(fhost, fport, { timeout = 5 })))
      c:settimeout(5)
      assert(c:write("one\n"))
      assert.equal("one", c:read("l"))
      assert(c:write("two\n", "three\n"))
      -- half-close: the echo server only sees EOF (and closes) if the forwarder
      -- passes our shutdown on; the echoes still come back after it
      assert(c:shutdown("w"))
      assert.equal("two\nthree\n", c:read("a"))
      assert.is_nil(c:read("l"))

      local log = wait_output(fwd, "^(.* closed, .-\n)")
      local who = log:match("\n(127%.0%.0%.1:%d+) %-> ")
      assert.equal(table.concat({
        "listening 127.0.0.1 " .. fport,
        ("%s -> %s:%d"):format(who, ehost, eport),
        who .. " closed, 14 bytes up, 14 bytes down",
      }, "\n") .. "\n", log)
      wait_output(echo, "client 1 done, 3 lines echoed\n$")
    end)

    it("carries many lines for echo_client.lua, a real process", function()
      local want = {}
      for i = 1, 2000 do want[i] = ("line %d %s"):format(i, ("x"):rep(i % 97)) end
      spit(tmp .. "/in", table.concat(want, "\n") .. "\n")
      local r = run("echo_client.lua", { fhost, fport }, tmp .. "/in")
      assert.equal("", r.err)
      assert.equal(0, r.code)
      assert.is_true(r.out == table.concat(want, "\n") .. "\n", "echoes differ")
    end)

    it("closes the client's connection when the target refuses", function()
      local own = helpers.scope(); finally(own.close)
      stop(echo)
      local c = own(assert(duplex.connect(fhost, fport, { timeout = 5 })))
      c:settimeout(5)
      local rest, _, code = c:read("a")
      assert.is_true(rest == "" or code == "ECONNRESET", tostring(code))
      assert.matches(": connect 127%.0%.0%.1:" .. eport .. ": Connection refused\n",
                     wait_output(fwd, "^(.*refused\n)"))
    end)
  end)

  describe("demo.lua", function()
    local function check_transcript(out)
      local lines = lines_of(out)
      assert.equal(1 + 3 + 3 * 7 + 3 + 1, #lines, out)
      assert.matches("^server    listening on 127%.0%.0%.1 port %d+$", lines[1])
      assert.equal("demo      3 clients, 9 lines echoed", lines[#lines])
      local per = {}
      local accepted, hung_up = 0, 0
      for i = 2, #lines - 1 do
        local who, what = lines[i]:sub(1, 9):gsub("%s+$", ""), lines[i]:sub(11)
        if who == "server" then
          if what:match("^accepted 127%.0%.0%.1:%d+$") then accepted = accepted + 1
          elseif what:match("^127%.0%.0%.1:%d+ hung up$") then hung_up = hung_up + 1
          else error("unexpected line: " .. lines[i]) end
        else
          per[who] = per[who] or {}
          table.insert(per[who], what)
        end
      end
      assert.equal(3, accepted)
      assert.equal(3, hung_up)
      for i = 1, 3 do
        local want = {}
        for j = 1, 3 do
          want[#want + 1] = ("-> line %d from client %d"):format(j, i)
          want[#want + 1] = ("<- line %d from client %d"):format(j, i)
        end
        want[#want + 1] = "done"
        assert.same(want, per["client " .. i])
      end
    end

    it("runs server and clients in one process and prints the whole transcript", function()
      local r = run("demo.lua", {})
      assert.equal("", r.err)
      assert.equal(0, r.code)
      check_transcript(r.out)
    end)

    it("finds the module by itself, as `make demo` runs it", function()
      -- (examples/repo_path.lua: build/ for 5.4, build/<interpreter>/ for the others)
      local own = helpers.lua54 and "./build/?.so" or ("./build/" .. helpers.interpreter .. "/?.so")
      local cpath = os.getenv("DUPLEX_CPATH")
      if cpath and cpath ~= own then
        pending("DUPLEX_CPATH set: this build is not in " .. own)
        return
      end
      local p = io.popen("pwd")
      local cwd = p:read("*l")
      p:close()
      local out, _, _, code = helpers.readall("cd /tmp && env -u LUA_PATH -u LUA_CPATH"
        .. " -u LUA_PATH_5_4 -u LUA_CPATH_5_4 -u LUA_PATH_5_3 -u LUA_CPATH_5_3 timeout 30 "
        .. helpers.interpreter .. " " .. quote(cwd .. "/examples/demo.lua") .. " 2>&1")
      assert.equal(0, code, out)
      check_transcript(out)
    end)
  end)
end)

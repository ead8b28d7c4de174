-- Argument errors, table-driven: every module function and every method.
-- A row is { what, fn(o), msg } (the exact message, after the
-- "file:line: " prefix that assert.has_error strips) or
-- { what, fn(o), match = pattern } where the wording is not fixed by the
-- contract; the pattern then still names the function and argument.
-- o holds o.srv, o.c (connected client), o.p (its accepted peer),
-- o.csrv (closed server), o.cc (closed client); what the methods of a
-- closed socket return is spec/08's.

local duplex = require "duplex"
local helpers = require "spec.helpers"

-- Fresh objects for one row; closed by the row's test.
local function objects()
  local o = {}
  o.c, o.p, o.srv = helpers.pair()
  finally(function() helpers.close(o.c, o.p, o.srv) end)
  o.csrv = assert(duplex.listen("127.0.0.1", 0))
  o.csrv:close()
  local _, port = o.srv:getsockname()
  o.cc = assert(duplex.connect("127.0.0.1", port))
  o.cc:close()
  local extra = assert(o.srv:accept(5))  -- the peer of o.cc
  extra:close()
  return o
end

local function run_rows(rows)
  for _, row in ipairs(rows) do
    it(row[1], function()
      local o = objects()
      if row.match then
        assert.has_error.matches(function() row[2](o) end, row.match)
      else
        assert.has_error(function() row[2](o) end, row[3])
      end
    end)
  end
end

-- Each of these raises through a plain call, so the message reads
-- "bad argument #N to 'name'" with N counted as the user wrote it.
-- A missing argument may read "got no value" (as Lua's own) or "got nil".
describe("module function arguments:", function()
  helpers.track_fds()
  local ba = "bad argument #%d to '%s' (%s)"
  run_rows {
    -- listen(host, port [, opts])
    { "listen: host missing", function() duplex.listen() end,
      match = "^bad argument #1 to 'listen' %(string expected, got n[io][l ].*%)$" },
    { "listen: host a table", function() duplex.listen({}, 0) end,
      ba:format(1, "listen", "string expected, got table") },
    { "listen: port a non-numeric string", function() duplex.listen("127.0.0.1", "x") end,
      ba:format(2, "listen", "number expected, got string") },
    { "listen: port a table", function() duplex.listen("127.0.0.1", {}) end,
      ba:format(2, "listen", "number expected, got table") },
    { "listen: port 1.5", function() duplex.listen("127.0.0.1", 1.5) end,
      ba:format(2, "listen", "number has no integer representation") },
    { "listen: port 70000", function() duplex.listen("127.0.0.1", 70000) end,
      match = "^bad argument #2 to 'listen' %(.+%)$" },
    { "listen: port -1", function() duplex.listen("127.0.0.1", -1) end,
      match = "^bad argument #2 to 'listen' %(.+%)$" },
    { "listen: opts a number", function() duplex.listen("127.0.0.1", 0, 5) end,
      ba:format(3, "listen", "table expected, got number") },
    { "listen: unknown option", function() duplex.listen("127.0.0.1", 0, { backlgo = 1 }) end,
      ba:format(3, "listen", "unknown option 'backlgo'") },
    { "listen: backlog -1", function() duplex.listen("127.0.0.1", 0, { backlog = -1 }) end,
      match = "^bad argument #3 to 'listen' %(.*backlog.*%)$" },
    { "listen: backlog a string", function() duplex.listen("127.0.0.1", 0, { backlog = "x" }) end,
      match = "^bad argument #3 to 'listen' %(.*backlog.*%)$" },
    { "listen: backlog 1.5", function() duplex.listen("127.0.0.1", 0, { backlog = 1.5 }) end,
      match = "^bad argument #3 to 'listen' %(.*backlog.*%)$" },
    { "listen: reuseaddr a string", function() duplex.listen("127.0.0.1", 0, { reuseaddr = "yes" }) end,
      match = "^bad argument #3 to 'listen' %(.*reuseaddr.*%)$" },
    { "listen: reuseport a number", function() duplex.listen("127.0.0.1", 0, { reuseport = 1 }) end,
      match = "^bad argument #3 to 'listen' %(.*reuseport.*%)$" },
    { "listen: v6only a string", function() duplex.listen("::1", 0, { v6only = "no" }) end,
      match = "^bad argument #3 to 'listen' %(.*v6only.*%)$" },

    -- connect(host, port [, opts])
    { "connect: host missing", function() duplex.connect() end,
      match = "^bad argument #1 to 'connect' %(string expected, got n[io][l ].*%)$" },
    { "connect: host a boolean", function() duplex.connect(true, 80) end,
      ba:format(1, "connect", "string expected, got boolean") },
    { "connect: port a non-numeric string", function() duplex.connect("127.0.0.1", "x") end,
      ba:format(2, "connect", "number expected, got string") },
    { "connect: port 70000", function() duplex.connect("127.0.0.1", 70000) end,
      match = "^bad argument #2 to 'connect' %(.+%)$" },
    { "connect: port -1", function() duplex.connect("127.0.0.1", -1) end,
      match = "^bad argument #2 to 'connect' %(.+%)$" },
    { "connect: opts a string that is no family", function() duplex.connect("127.0.0.1", 80, "fast") end,
      ba:format(3, "connect", "invalid option 'fast'") },
    { "connect: opts a number", function() duplex.connect("127.0.0.1", 80, 5) end,
      ba:format(3, "connect", "table expected, got number") },
    { "connect: unknown option", function() duplex.connect("127.0.0.1", 80, { tiemout = 1 }) end,
      ba:format(3, "connect", "unknown option 'tiemout'") },
    { "connect: negative timeout", function() duplex.connect("127.0.0.1", 80, { timeout = -1 }) end,
      match = "^bad argument #3 to 'connect' %(.*timeout.*%)$" },
    { "connect: timeout a string", function() duplex.connect("127.0.0.1", 80, { timeout = "x" }) end,
      match = "^bad argument #3 to 'connect' %(.*timeout.*%)$" },
    { "connect: nodelay a number", function() duplex.connect("127.0.0.1", 80, { nodelay = 1 }) end,
      match = "^bad argument #3 to 'connect' %(.*nodelay.*%)$" },
    { "connect: bind a number", function() duplex.connect("127.0.0.1", 80, { bind = 5 }) end,
      match = "^bad argument #3 to 'connect' %(.*bind.*%)$" },
    { "connect: bind port 70000", function() duplex.connect("127.0.0.1", 80, { bind = { "127.0.0.1", 70000 } }) end,
      ba:format(3, "connect", "option 'bind': port must be an integer from 0 to 65535") },
    { "connect: bind port a non-numeric string", function() duplex.connect("127.0.0.1", 80, { bind = { "127.0.0.1", "x" } }) end,
      ba:format(3, "connect", "option 'bind': port must be an integer from 0 to 65535") },
    { "connect: bind host with a zero byte", function() duplex.connect("127.0.0.1", 80, { bind = "127.0.0.1\0x" }) end,
      ba:format(3, "connect", "option 'bind': host contains a zero byte") },
    { "connect: bind an empty unix path", function() duplex.connect("unix:/x", nil, { bind = "unix:" }) end,
      ba:format(3, "connect", "option 'bind': empty unix socket path") },

    -- resolve(host [, port])
    { "resolve: host missing", function() duplex.resolve() end,
      match = "^bad argument #1 to 'resolve' %(string expected, got n[io][l ].*%)$" },
    { "resolve: host a table", function() duplex.resolve({}) end,
      ba:format(1, "resolve", "string expected, got table") },
    { "resolve: port a table", function() duplex.resolve("127.0.0.1", {}) end,
      match = "^bad argument #2 to 'resolve' %(.+%)$" },
    { "resolve: port 70000", function() duplex.resolve("127.0.0.1", 70000) end,
      match = "^bad argument #2 to 'resolve' %(.+%)$" },

    -- run, spawn, sleep, type, onerror
    { "run: not a function", function() duplex.run(5) end,
      ba:format(1, "run", "function expected, got number") },
    { "run: nothing", function() duplex.run() end,
      match = "^bad argument #1 to 'run' %(function expected, got n[io][l ].*%)$" },
    { "spawn: not a function (inside run)", function()
        duplex.run(function() duplex.spawn(5) end)
      end, ba:format(1, "spawn", "function expected, got number") },
    { "spawn: outside run", function() duplex.spawn(function() end) end,
      match = "not inside duplex%.run" },
    { "sleep: a string", function() duplex.sleep("x") end,
      ba:format(1, "sleep", "number expected, got string") },
    { "sleep: nothing", function() duplex.sleep() end,
      ba:format(1, "sleep", "number expected, got no value") },
    { "type: nothing", function() duplex.type() end,
      ba:format(1, "type", "value expected") },
    { "onerror: a number", function() duplex.onerror(5) end,
      match = "^bad argument #1 to 'onerror' %(.+%)$" },
  }
end)

-- Methods called with ':' do not count self, as in Lua's io library.
describe("server method arguments:", function()
  helpers.track_fds()
  local ba = "bad argument #%d to '%s' (%s)"
  run_rows {
    { "accept: timeout a string", function(o) o.srv:accept("x") end,
      ba:format(1, "accept", "number expected, got string") },
    { "accept: negative timeout", function(o) o.srv:accept(-1) end,
      match = "^bad argument #1 to 'accept' %(.+%)$" },
    { "settimeout: a string", function(o) o.srv:settimeout("x") end,
      ba:format(1, "settimeout", "number expected, got string") },
    { "settimeout: negative", function(o) o.srv:settimeout(-0.5) end,
      match = "^bad argument #1 to 'settimeout' %(.+%)$" },
    { "setoption: name a table", function(o) o.srv:setoption({}, true) end,
      ba:format(1, "setoption", "string expected, got table") },
    { "setoption: unknown name", function(o) o.srv:setoption("bogus", 1) end,
      match = "^bad argument #1 to 'setoption' %(.*'bogus'.*%)$" },
    { "setoption: client-only name", function(o) o.srv:setoption("idletimeout", 1) end,
      match = "^bad argument #1 to 'setoption' %(.*'idletimeout'.*%)$" },
    { "setoption: v6only is read-only", function(o) o.srv:setoption("v6only", true) end,
      match = "^bad argument #1 to 'setoption' %(.*v6only.*%)$" },
    { "setoption: reuseaddr a string", function(o) o.srv:setoption("reuseaddr", "on") end,
      match = "^bad argument #2 to 'setoption' %(.+%)$" },
    { "setoption: rcvbuf a string", function(o) o.srv:setoption("rcvbuf", "big") end,
      match = "^bad argument #2 to 'setoption' %(.+%)$" },
    { "setoption: sndbuf negative", function(o) o.srv:setoption("sndbuf", -1) end,
      match = "^bad argument #2 to 'setoption' %(.+%)$" },
    { "getoption: name missing", function(o) o.srv:getoption() end,
      ba:format(1, "getoption", "string expected, got no value") },
    { "getoption: unknown name", function(o) o.srv:getoption("bogus") end,
      match = "^bad argument #1 to 'getoption' %(.*'bogus'.*%)$" },
    { "serve: not a function", function(o) o.srv:serve(5) end,
      ba:format(1, "serve", "function expected, got number") },

    -- self of the wrong type (method fetched and called as a plain function)
    { "accept: self a client", function(o) o.srv.accept(o.c) end,
      ba:format(1, "accept", "duplex.server expected, got duplex.client") },
    { "accept: self a table", function(o) o.srv.accept({}) end,
      ba:format(1, "accept", "duplex.server expected, got table") },
    { "accept: no self", function(o) o.srv.accept() end,
      ba:format(1, "accept", "duplex.server expected, got no value") },
    { "serve: self a client", function(o) o.srv.serve(o.c, print) end,
      ba:format(1, "serve", "duplex.server expected, got duplex.client") },
    { "getsockname: self a string", function(o) o.srv.getsockname("x") end,
      match = "^bad argument #1 to 'getsockname' %(.+ expected, got string%)$" },

  }
end)

describe("client method arguments:", function()
  helpers.track_fds()
  local ba = "bad argument #%d to '%s' (%s)"
  run_rows {
    -- read(fmt, ...)
    { "read: unknown format", function(o) o.c:read("x") end,
      ba:format(1, "read", "invalid format 'x'") },
    { "read: '*n' is not supported", function(o) o.c:read("*n") end,
      ba:format(1, "read", "invalid format '*n'") },
    { "read: 'n' is not supported", function(o) o.c:read("n") end,
      ba:format(1, "read", "invalid format 'n'") },
    { "read: empty format", function(o) o.c:read("") end,
      ba:format(1, "read", "invalid format ''") },
    { "read: second format bad", function(o) o.c:read("l", "x") end,
      ba:format(2, "read", "invalid format 'x'") },
    { "read: a format with a zero byte", function(o) o.c:read("l\0x") end,
      ba:format(1, "read", "invalid format (contains a zero byte)") },
    { "read: a table", function(o) o.c:read({}) end,
      match = "^bad argument #1 to 'read' %(.+%)$" },
    { "read: a boolean", function(o) o.c:read(true) end,
      match = "^bad argument #1 to 'read' %(.+%)$" },
    { "read: negative count", function(o) o.c:read(-1) end,
      match = "^bad argument #1 to 'read' %(.+%)$" },
    { "read: count 1.5", function(o) o.c:read(1.5) end,
      match = "^bad argument #1 to 'read' %(.+%)$" },

    -- readuntil(delim [, max])
    { "readuntil: no delimiter", function(o) o.c:readuntil() end,
      ba:format(1, "readuntil", "string expected, got no value") },
    { "readuntil: delimiter a table", function(o) o.c:readuntil({}) end,
      ba:format(1, "readuntil", "string expected, got table") },
    { "readuntil: empty delimiter", function(o) o.c:readuntil("") end,
      match = "^bad argument #1 to 'readuntil' %(.+%)$" },
    { "readuntil: max a string", function(o) o.c:readuntil("\n", "x") end,
      ba:format(2, "readuntil", "number expected, got string") },
    { "readuntil: max negative", function(o) o.c:readuntil("\n", -1) end,
      match = "^bad argument #2 to 'readuntil' %(.+%)$" },
    { "readuntil: max 1.5", function(o) o.c:readuntil("\n", 1.5) end,
      ba:format(2, "readuntil", "number has no integer representation") },

    -- readsome([max])
    { "readsome: max a string", function(o) o.c:readsome("x") end,
      ba:format(1, "readsome", "number expected, got string") },
    { "readsome: max 0", function(o) o.c:readsome(0) end,
      match = "^bad argument #1 to 'readsome' %(.+%)$" },
    { "readsome: max negative", function(o) o.c:readsome(-5) end,
      match = "^bad argument #1 to 'readsome' %(.+%)$" },

    -- write(...)
    { "write: a table", function(o) o.c:write({}) end,
      ba:format(1, "write", "string expected, got table") },
    { "write: a boolean second", function(o) o.c:write("a", true) end,
      ba:format(2, "write", "string expected, got boolean") },
    { "write: nil third", function(o) o.c:write("a", "b", nil) end,
      ba:format(3, "write", "string expected, got nil") },

    -- lines([fmt])
    { "lines: unknown format", function(o)
        for _ in o.c:lines("x") do break end
      end, match = "invalid format" },

    -- shutdown([how])
    { "shutdown: unknown direction", function(o) o.c:shutdown("x") end,
      match = "^bad argument #1 to 'shutdown' %(.*'x'.*%)$" },
    { "shutdown: a number", function(o) o.c:shutdown(1) end,
      match = "^bad argument #1 to 'shutdown' %(.+%)$" },

    -- settimeout(s)
    { "settimeout: a string", function(o) o.c:settimeout("x") end,
      ba:format(1, "settimeout", "number expected, got string") },
    { "settimeout: negative", function(o) o.c:settimeout(-1) end,
      match = "^bad argument #1 to 'settimeout' %(.+%)$" },

    -- setoption(name, v) / getoption(name)
    { "setoption: name a table", function(o) o.c:setoption({}, true) end,
      ba:format(1, "setoption", "string expected, got table") },
    { "setoption: unknown name", function(o) o.c:setoption("bogus", true) end,
      match = "^bad argument #1 to 'setoption' %(.*'bogus'.*%)$" },
    { "setoption: nodelay a string", function(o) o.c:setoption("nodelay", "yes") end,
      match = "^bad argument #2 to 'setoption' %(.+%)$" },
    { "setoption: keepalive a number", function(o) o.c:setoption("keepalive", 1) end,
      match = "^bad argument #2 to 'setoption' %(.+%)$" },
    { "setoption: linger a string", function(o) o.c:setoption("linger", "x") end,
      match = "^bad argument #2 to 'setoption' %(.+%)$" },
    { "setoption: linger negative", function(o) o.c:setoption("linger", -1) end,
      match = "^bad argument #2 to 'setoption' %(.+%)$" },
    { "setoption: rcvbuf a string", function(o) o.c:setoption("rcvbuf", "x") end,
      match = "^bad argument #2 to 'setoption' %(.+%)$" },
    { "setoption: sndbuf negative", function(o) o.c:setoption("sndbuf", -1) end,
      match = "^bad argument #2 to 'setoption' %(.+%)$" },
    { "setoption: maxline 0", function(o) o.c:setoption("maxline", 0) end,
      match = "^bad argument #2 to 'setoption' %(.+%)$" },
    { "setoption: maxline a string", function(o) o.c:setoption("maxline", "x") end,
      match = "^bad argument #2 to 'setoption' %(.+%)$" },
    { "getoption: name missing", function(o) o.c:getoption() end,
      ba:format(1, "getoption", "string expected, got no value") },
    { "getoption: unknown name", function(o) o.c:getoption("bogus") end,
      match = "^bad argument #1 to 'getoption' %(.*'bogus'.*%)$" },
    { "getoption: server-only name", function(o) o.c:getoption("reuseport") end,
      match = "^bad argument #1 to 'getoption' %(.*'reuseport'.*%)$" },

    -- self of the wrong type
    { "read: self a server", function(o) o.c.read(o.srv, "l") end,
      ba:format(1, "read", "duplex.client expected, got duplex.server") },
    { "read: self a number", function(o) o.c.read(5) end,
      ba:format(1, "read", "duplex.client expected, got number") },
    { "read: no self", function(o) o.c.read() end,
      ba:format(1, "read", "duplex.client expected, got no value") },
    { "readuntil: self a server", function(o) o.c.readuntil(o.srv, "\n") end,
      ba:format(1, "readuntil", "duplex.client expected, got duplex.server") },
    { "readsome: self a server", function(o) o.c.readsome(o.srv) end,
      ba:format(1, "readsome", "duplex.client expected, got duplex.server") },
    { "write: self a server", function(o) o.c.write(o.srv, "x") end,
      ba:format(1, "write", "duplex.client expected, got duplex.server") },
    -- (a file handle is named by its metatable's __name, which 5.1's lacks)
    { "write: self a file", function(o) o.c.write(io.stderr, "") end,
      ba:format(1, "write", "duplex.client expected, got " ..
        (debug.getmetatable(io.stderr).__name or "userdata")) },
    { "lines: self a server", function(o) o.c.lines(o.srv) end,
      ba:format(1, "lines", "duplex.client expected, got duplex.server") },
    { "shutdown: self a server", function(o) o.c.shutdown(o.srv) end,
      ba:format(1, "shutdown", "duplex.client expected, got duplex.server") },
    { "getpeername: self a server", function(o) o.c.getpeername(o.srv) end,
      ba:format(1, "getpeername", "duplex.client expected, got duplex.server") },
    { "getsockname: self a string", function(o) o.c.getsockname("x") end,
      match = "^bad argument #1 to 'getsockname' %(.+ expected, got string%)$" },
    { "close: self a table", function(o) o.c.close({}) end,
      match = "^bad argument #1 to 'close' %(.+ expected, got table%)$" },

  }
end)

describe("a lines iterator", function()
  helpers.track_fds()

  it("raises a failure with code EBADF when its client is closed between iterations", function()
    local c, p, srv = helpers.pair()
    finally(function() helpers.close(c, p, srv) end)
    local _, port = c:getsockname()
    assert(c:write("one\ntwo\n"))
    local it = p:lines()
    assert.equal("one", it())
    p:close()
    local ok, e = pcall(it)
    assert.is_false(ok)
    assert.same({ msg = ("read 127.0.0.1:%d: socket is closed"):format(port), code = "EBADF" },
      { msg = e.msg, code = e.code, partial = e.partial })
  end)
end)

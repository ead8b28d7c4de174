-- ftp_server.lua: a small file server in the spirit of ftp: commands on a line
-- protocol, file contents as raw bytes (binary-safe), one task per client (serve).
-- Run: lua5.4 examples/ftp_server.lua DIR [host] [port]; then use ftp_client.lua
--
-- Protocol (every reply is one line, "OK ..." or "ERR message"):
--   SIZE name          -> OK <size>
--   GET name           -> OK <size>, then exactly <size> raw bytes
--   PUT name <size>    followed by exactly <size> raw bytes -> OK <size>
--   QUIT               -> OK bye, and the server closes the connection
-- Names are plain file names inside DIR: "/" and ".." are refused.

dofile(((arg and arg[0] or ""):match("^(.*)[/\\]") or ".") .. "/repo_path.lua")

local duplex = require "duplex"

-- A whole number from a string, or nil (math.tointeger, on every Lua).
local function integer(s)
  local n = tonumber(s)
  return n and n % 1 == 0 and n or nil
end

local root = arg[1]
if not root then
  io.stderr:write("usage: ftp_server.lua DIR [host] [port]\n")
  os.exit(2)
end
local host = arg[2] or "127.0.0.1"
local port = integer(arg[3] or 0)
local CHUNK = 65536

local function log(...)
  io.write(...); io.write("\n"); io.stdout:flush()
end

-- the only names we serve: no directories, no way out of root
local function path_of(name)
  if name == nil or name == "" or name:find("/", 1, true) or name:find("..", 1, true)
     or name:find("%z") then
    return nil, "bad file name"
  end
  return root .. "/" .. name
end

local function open(name, mode)
  local path, err = path_of(name)
  if not path then return nil, err end
  local f = io.open(path, mode)
  if not f then return nil, "cannot open " .. name end
  return f, path
end

-- copy exactly `size` bytes from the connection to file `f` (nil: discard them)
local function receive(conn, f, size)
  local left = size
  while left > 0 do
    local chunk, err = conn:readsome(math.min(left, CHUNK))
    if not chunk then return nil, err or "connection closed" end
    if f then f:write(chunk) end
    left = left - #chunk
  end
  return true
end

local commands = {}

function commands.SIZE(conn, name)
  local f, err = open(name, "rb")
  if not f then return conn:write("ERR ", err, "\n") end
  local size = f:seek("end")
  f:close()
  return conn:write("OK ", size, "\n")
end

function commands.GET(conn, name)
  local f, err = open(name, "rb")
  if not f then return conn:write("ERR ", err, "\n") end
  local size = f:seek("end")
  f:seek("set")
  local ok, werr = conn:write("OK ", size, "\n")
  while ok do
    local chunk = f:read(CHUNK)
    if not chunk then break end
    ok, werr = conn:write(chunk)
  end
  f:close()
  return ok, werr
end

function commands.PUT(conn, args)
  local name, size = args:match("^(.-) (%d+)$")
  size = integer(size)
  if not size then
    conn:write("ERR usage: PUT name size\n")
    return nil               -- we cannot tell where the bytes end: hang up
  end
  local path, err = path_of(name)
  local f = path and io.open(path .. ".part", "wb")
  if path and not f then err = "cannot write " .. name end
  -- the bytes follow the command whatever we do with them: always read them
  -- (f == nil: discard), so the next command is found where it should be
  local ok, rerr = receive(conn, f, size)
  if f then f:close() end
  if not ok then
    if f then os.remove(path .. ".part") end
    return nil, rerr
  end
  if not f then return conn:write("ERR ", err, "\n") end
  assert(os.rename(path .. ".part", path))   -- a file appears whole, or not at all
  return conn:write("OK ", size, "\n")
end

duplex.run(function()
  local server = assert(duplex.listen(host, port))
  local lhost, lport = server:getsockname()
  log("listening ", lhost, " ", lport)

  server:serve(function(conn)
    local phost, pport = conn:getpeername()
    local who = phost .. ":" .. pport
    conn:settimeout(60)
    log(who, " connected")
    while true do
      local line = conn:read("l")
      if not line then break end
      local cmd, rest = line:match("^(%a+) ?(.*)$")
      cmd = cmd and cmd:upper()
      log(who, " ", line)
      if cmd == "QUIT" then
        conn:write("OK bye\n")
        break
      elseif commands[cmd] then
        if not commands[cmd](conn, rest) then break end
      else
        conn:write("ERR unknown command\n")
      end
    end
    conn:close()
    log(who, " gone")
  end)
end)

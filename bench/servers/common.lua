-- Shared by the Lua peers: the HTTP responses (byte for byte those of
-- c_server.c) and the "Connection: close" test.
local M = {}
M.RESP = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!"
M.RESP_CLOSE = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n"
  .. "Connection: close\r\n\r\nHello, World!"
-- Plain searches first, so a request without the header costs no lowercase
-- copy; header names are matched in their usual spellings.
function M.wants_close(head)
  local at = head:find("\nConnection:", 1, true) or head:find("\nconnection:", 1, true)
    or head:find("\nCONNECTION:", 1, true)
  if not at then return false end
  return head:find("^[^\n]*[Cc][Ll][Oo][Ss][Ee]", at + 12) ~= nil
end
function M.args()
  local mode, port = arg[1], tonumber(arg[2] or "0")
  if mode ~= "http" and mode ~= "echo" or not port then
    io.stderr:write("usage: ", arg[0], " http|echo PORT\n")
    os.exit(2)
  end
  return mode, port
end
function M.announce(port)
  io.stdout:write("PORT ", port, "\n")
  io.stdout:flush()
end
return M

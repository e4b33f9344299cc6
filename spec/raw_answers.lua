-- Crafted raw HTTP answers for the ngx transport's parser (spec 21). The upstream nginx
-- sends answers[name] byte for byte on a raw socket, then closes; the valid ones say
-- "Connection: close" so that no client pools a connection that is about to go away.
local OK = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
local CHUNKED = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"

return {
  -- well-formed, if unusual: must be read
  no_reason = "HTTP/1.1 200\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
  continue = "HTTP/1.1 100 Continue\r\n\r\n" .. OK,
  chunk_ext = "HTTP/1.1 200 OK\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
              .. "5;name=value\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n",
  te_and_cl = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n"
              .. "2\r\nok\r\n0\r\n\r\n",
  -- malformed: each must be a protocol error, never a 200 with a wrong body
  status_4_digits = "HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok",
  status_099 = "HTTP/1.1 099 Odd\r\n\r\n" .. OK,
  status_101 = "HTTP/1.1 101 Switching Protocols\r\n\r\n",
  chunk_size_0x = CHUNKED .. "0x5\r\nhello\r\n0\r\n\r\n",
  chunk_size_junk = CHUNKED .. "5 junk\r\nhello\r\n0\r\n\r\n",
  chunk_size_huge = CHUNKED .. "ffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
  bad_trailer = CHUNKED .. "2\r\nok\r\n0\r\nnot a header\r\n\r\n",
  space_before_colon = "HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",
  folded_header = "HTTP/1.1 200 OK\r\nX-A: 1\r\n  more\r\nContent-Length: 2\r\n\r\nok",
  bare_cr = "HTTP/1.1 200 OK\r\nX-A: a\rContent-Length: 9\r\nContent-Length: 2\r\n\r\nok",
  te_gzip_chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
  te_chunked_gzip = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n2\r\nok\r\n0\r\n\r\n",
}

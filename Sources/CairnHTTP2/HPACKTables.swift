// HPACK's fixed tables (RFC 7541): the static table (Appendix A) and the Huffman code's
// lengths (Appendix B). The Huffman code is canonical (codes assigned in order of length,
// then symbol), so the lengths determine it; `HPACKHuffman` rebuilds the codes from them,
// and the tests decode the RFC's own examples (Appendix C.4, C.6) with it.

/// RFC 7541 Appendix A, entries 1 to 61.
let hpackStaticTableStrings: [(String, String)] = [
    (":authority", ""),  // 1
    (":method", "GET"),  // 2
    (":method", "POST"),  // 3
    (":path", "/"),  // 4
    (":path", "/index.html"),  // 5
    (":scheme", "http"),  // 6
    (":scheme", "https"),  // 7
    (":status", "200"),  // 8
    (":status", "204"),  // 9
    (":status", "206"),  // 10
    (":status", "304"),  // 11
    (":status", "400"),  // 12
    (":status", "404"),  // 13
    (":status", "500"),  // 14
    ("accept-charset", ""),  // 15
    ("accept-encoding", "gzip, deflate"),  // 16
    ("accept-language", ""),  // 17
    ("accept-ranges", ""),  // 18
    ("accept", ""),  // 19
    ("access-control-allow-origin", ""),  // 20
    ("age", ""),  // 21
    ("allow", ""),  // 22
    ("authorization", ""),  // 23
    ("cache-control", ""),  // 24
    ("content-disposition", ""),  // 25
    ("content-encoding", ""),  // 26
    ("content-language", ""),  // 27
    ("content-length", ""),  // 28
    ("content-location", ""),  // 29
    ("content-range", ""),  // 30
    ("content-type", ""),  // 31
    ("cookie", ""),  // 32
    ("date", ""),  // 33
    ("etag", ""),  // 34
    ("expect", ""),  // 35
    ("expires", ""),  // 36
    ("from", ""),  // 37
    ("host", ""),  // 38
    ("if-match", ""),  // 39
    ("if-modified-since", ""),  // 40
    ("if-none-match", ""),  // 41
    ("if-range", ""),  // 42
    ("if-unmodified-since", ""),  // 43
    ("last-modified", ""),  // 44
    ("link", ""),  // 45
    ("location", ""),  // 46
    ("max-forwards", ""),  // 47
    ("proxy-authenticate", ""),  // 48
    ("proxy-authorization", ""),  // 49
    ("range", ""),  // 50
    ("referer", ""),  // 51
    ("refresh", ""),  // 52
    ("retry-after", ""),  // 53
    ("server", ""),  // 54
    ("set-cookie", ""),  // 55
    ("strict-transport-security", ""),  // 56
    ("transfer-encoding", ""),  // 57
    ("user-agent", ""),  // 58
    ("vary", ""),  // 59
    ("via", ""),  // 60
    ("www-authenticate", ""),  // 61
]

/// RFC 7541 Appendix B: the code length in bits of symbols 0 to 255 and of EOS (256).
let hpackHuffmanCodeLengths: [UInt8] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
    6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,
    5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
    13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,
    6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
    30,
]

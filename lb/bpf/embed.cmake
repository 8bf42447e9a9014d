# cmake -DIN=obj -DOUT=cpp -P embed.cmake: the BPF object as a C++ byte array.
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" n)
math(EXPR size "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(([^,]*,){16})" "\\1\n" bytes "${bytes}")
file(WRITE ${OUT} "// Generated from splice.bpf.o by lb/bpf/embed.cmake.\n#include <cstddef>\n"
     "extern const unsigned char kSpliceBpfObject[];\nextern const size_t kSpliceBpfObjectSize;\n"
     "alignas(8) const unsigned char kSpliceBpfObject[] = {\n${bytes}\n};\n"
     "const size_t kSpliceBpfObjectSize = ${size};\n")

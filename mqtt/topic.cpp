#include "mqtt/codec.hpp"

module github.com/longpoll/longpoll/bench/peers/golongpoll

go 1.26

require github.com/jcuga/golongpoll v1.3.1

require github.com/gofrs/uuid v4.0.0+incompatible // indirect

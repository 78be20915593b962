module github.com/longpoll/longpoll/cmd/longpoll-bench

go 1.26.8

require github.com/longpoll/longpoll v0.0.0

replace github.com/longpoll/longpoll => ../..

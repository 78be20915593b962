// Package deploy holds no code: it is the home of longpoll's deployment
// files (nginx.conf and longpoll_proxy.conf for nginx, longpoll.service
// for systemd, Dockerfile) and of the test that runs the shipped nginx
// configuration in front of the real binary.
package deploy

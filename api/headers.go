package api

import "github.com/labstack/echo/v4"

// noSniff tells browsers never to read a response as another type than
// the one it declares (an error message quoting input stays JSON).
func noSniff(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		c.Response().Header().Set("X-Content-Type-Options", "nosniff")
		return next(c)
	}
}

// wholeFiles drops the request headers with which http.ServeContent would
// answer a static file with a plain-text 412 or 416 (If-Match,
// If-Unmodified-Since, Range, If-Range): the files are small and every
// error of the API has the JSON body. Conditional GETs (304) still work.
func wholeFiles(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Request().Header
		for _, k := range []string{"Range", "If-Range", "If-Match", "If-Unmodified-Since"} {
			h.Del(k)
		}
		return next(c)
	}
}

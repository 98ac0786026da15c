-- POST a fixed JSON body: BODY and PATH_ come from the environment.
wrk.method = "POST"
wrk.body = os.getenv("BODY")
wrk.headers["Content-Type"] = "application/json"
wrk.path = os.getenv("PATH_")

console.log("env-456 single-page app 5d1e0a42");

//! ChromiumDriver: the BrowserDriver that runs WhatsApp Web in real Chromium through chromiumoxide (CDP).

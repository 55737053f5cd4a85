//! Reading every page of a resource: page 1 first to learn `page_count`, then the rest with a
//! bounded number of requests in flight, in order.

use futures::stream::{self, BoxStream, StreamExt};

use super::{DaftraClient, FetchError, Page};
use crate::catalogue::Resource;

impl DaftraClient {
    /// Every page in order: page 1 first, then pages `2..=page_count` with at most
    /// `DAFTRA_CONCURRENCY` requests in flight. Ends after `page_count`, or at a page with a null
    /// `next` or empty `data`. The first error ends the stream.
    pub fn pages<'a>(
        &'a self,
        resource: &'static Resource,
    ) -> BoxStream<'a, Result<Page, FetchError>> {
        let concurrency = self.settings.concurrency;
        stream::once(self.list_page(resource, 1))
            .flat_map(move |first| match first {
                Err(e) => stream::iter([Err(e)]).boxed(),
                Ok(p1) => {
                    let last = if p1.is_empty() || p1.pagination.next.is_none() {
                        1
                    } else {
                        p1.pagination.page_count.max(1)
                    };
                    let rest = stream::iter(2..=last)
                        .map(move |n| self.list_page(resource, n))
                        .buffered(concurrency)
                        .boxed();
                    stream::iter([Ok(p1)]).chain(rest).boxed()
                }
            })
            .scan(false, |ended, page| {
                if *ended {
                    return futures::future::ready(None);
                }
                *ended = match &page {
                    Ok(p) => p.is_empty() || p.pagination.next.is_none(),
                    Err(_) => true,
                };
                futures::future::ready(Some(page))
            })
            .boxed()
    }
}

/// Runs [`DaftraClient::pages`] in its own task and hands the pages over a channel holding at
/// most `buffer` pages, so parsing and requests go on while the receiver works on a page. The
/// task stops when the receiver is dropped; the first error is the last message.
pub fn spawn_pages(
    client: std::sync::Arc<DaftraClient>,
    resource: &'static Resource,
    buffer: usize,
) -> tokio::sync::mpsc::Receiver<Result<Page, FetchError>> {
    let (tx, rx) = tokio::sync::mpsc::channel(buffer.max(1));
    tokio::spawn(async move {
        let mut pages = client.pages(resource);
        loop {
            let page = tokio::select! {
                _ = tx.closed() => break,
                page = pages.next() => page,
            };
            let Some(page) = page else { break };
            let failed = page.is_err();
            if tx.send(page).await.is_err() || failed {
                break;
            }
        }
    });
    rx
}

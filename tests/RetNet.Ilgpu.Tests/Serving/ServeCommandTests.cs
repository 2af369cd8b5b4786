using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Tests.Model;
using RetNet.Ilgpu.Tests.Robustness;
using RetNet.Ilgpu.Tests.Support;

namespace RetNet.Ilgpu.Tests.Serving;

/// <summary><c>retnet serve</c> as a process: it prints the port it picked, answers, and SIGTERM stops it within
/// seconds, ending the stream in flight cleanly.</summary>
[Collection(DeviceCollection.Name)]
public sealed partial class ServeCommandTests(DeviceFixture fixture) : IDisposable
{
    private const int SigTerm = 15;

    private readonly string root = Directory.CreateTempSubdirectory("retnet-serve-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    [Fact]
    public async Task Sigterm_ends_the_stream_in_flight_and_exits_0_within_seconds()
    {
        if (OperatingSystem.IsWindows())
            return;
        var model = Path.Combine(root, "micro");
        using (var created = LanguageModel.Create(fixture.Device, ModelTestSupport.Micro() with { VocabSize = 256 }, 2))
            created.Save(model);
        var output = new List<string>();
        using var process = ChildProcess.Start(ChildProcess.RetnetDll,
            ["serve", "--model", model, "--port", "0", "--device", "cpu", "--max-context", "20000000"], output);
        try
        {
            var watch = Stopwatch.StartNew();
            string? address = null;
            while (address is null && !process.HasExited && watch.Elapsed < TimeSpan.FromSeconds(60))
            {
                lock (output)
                    address = output.Select(l => Address().Match(l)).FirstOrDefault(m => m.Success)?.Value;
                Thread.Sleep(20);
            }
            Assert.True(address is not null, string.Join('\n', output));

            using var http = new HttpClient { BaseAddress = new Uri(address!), Timeout = TimeSpan.FromSeconds(60) };
            // Far longer than the 5 s the shutdown lets it run: the micro model decodes tens of thousands of tokens a
            // second (90,000 tokens once finished inside the grace and ended "length").
            using var response = await http.SendAsync(new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
            {
                Content = new StringContent("""{"prompt":"a","max_tokens":10000000,"stream":true}""", Encoding.UTF8,
                    "application/json"),
            }, HttpCompletionOption.ResponseHeadersRead);
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            Assert.StartsWith("data: ", await reader.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(60)));

            watch.Restart();
            Assert.Equal(0, Signal(process.Id, SigTerm));
            var rest = await reader.ReadToEndAsync().WaitAsync(TimeSpan.FromSeconds(30));
            Assert.EndsWith("data: [DONE]", rest.TrimEnd());
            Assert.Contains("\"finish_reason\":\"cancelled\"", rest);
            Assert.True(process.WaitForExit(TimeSpan.FromSeconds(30)), string.Join('\n', output));
            process.WaitForExit();
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(20), $"stopped after {watch.Elapsed}");
            Assert.Equal(0, process.ExitCode);
        }
        finally
        {
            if (!process.HasExited)
                process.Kill();
        }
    }

    [GeneratedRegex(@"http://127\.0\.0\.1:\d+/?")]
    private static partial Regex Address();

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Signal(int pid, int signal);
}

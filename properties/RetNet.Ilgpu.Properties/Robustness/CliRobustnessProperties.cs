using System.CommandLine;
using System.Text;
using FsCheck;
using FsCheck.Fluent;
using RetNet.Ilgpu.Cli;
using RetNet.Ilgpu.Cli.Commands;
using RetNet.Ilgpu.Model;
using RetNet.Ilgpu.Training.Data;

namespace RetNet.Ilgpu.Properties.Robustness;

/// <summary>The CLI properties redirect the process's console, so they run alone.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ConsoleCollection
{
    /// <summary>The collection's name.</summary>
    public const string Name = "console";
}

/// <summary>A token file's text and how it was made.</summary>
public sealed record TokenText(string Description, string Text)
{
    /// <inheritdoc/>
    public override string ToString() => $"{Description}: {(Text.Length > 200 ? Text[..200] + "…" : Text)}";
}

/// <summary>One retnet argument vector.</summary>
public sealed record Arguments(string[] Values)
{
    /// <inheritdoc/>
    public override string ToString() => "retnet " + string.Join(" ", Values.Select(v => v.Contains(' ') || v.Length == 0 ? $"'{v}'" : v));
}

/// <summary>
/// The retnet command line, invoked in-process on argument vectors drawn from every option of init, forward,
/// gradients, generate and eval, each given a valid value, a bad one (a missing file, a malformed token, config or
/// checkpoint file, a directory where a file is expected, a negative, zero or huge number, an unknown name) or left
/// out, plus unknown options and stray arguments. The law: the exit code is 0 or 1 (System.CommandLine answers a parse
/// error with 1 too), no exception escapes, a failure writes at least one line to stderr and at most one
/// <c>error:</c> line, and no output file is left behind by a failure, nor a temporary file by anything. Also the
/// token-file reader of forward and gradients on its own.
/// </summary>
[Collection(ConsoleCollection.Name)]
public sealed class CliRobustnessProperties : IDisposable
{
    private static readonly string[] TokenPieces =
    [
        "1", "2", "39", "0", "-1", "40", "2147483647", "2147483648", "99999999999999999999", "1.5", "1e3", "x", "+3", "0x10",
        "٣", "NaN", "", " ", "  ", "\t", "\u00A0", "\v",
    ];

    private readonly string folder = Fuzz.TemporaryFolder("cli");
    private readonly string model, badConfigModel, badWeightsModel, tokens, config, badConfig, data;

    public CliRobustnessProperties()
    {
        config = Write("config.json", ModelTestSupportConfig().ToJson());
        badConfig = Write("bad-config.json", "{\"decoder_embed_dim\": -4}");
        tokens = Write("tokens.txt", "1 2 3\n4 5 6\n");
        data = Path.Combine(folder, "data.bin");
        TokenDataset.WriteTokenFile(data, Enumerable.Range(0, 64).Select(i => i % 40).ToArray());
        model = Path.Combine(folder, "model");
        Assert.Equal(0, Invoke(["init", "--config", config, "--output", model, "--device", "cpu"]).Code);
        badConfigModel = Directory.CreateDirectory(Path.Combine(folder, "bad-config-model")).FullName;
        File.Copy(Path.Combine(model, "model.safetensors"), Path.Combine(badConfigModel, "model.safetensors"));
        File.WriteAllText(Path.Combine(badConfigModel, "config.json"), "{\"decoder_embed_dim\": 16,");
        badWeightsModel = Directory.CreateDirectory(Path.Combine(folder, "bad-weights-model")).FullName;
        File.Copy(Path.Combine(model, "config.json"), Path.Combine(badWeightsModel, "config.json"));
        var weights = File.ReadAllBytes(Path.Combine(model, "model.safetensors"));
        File.WriteAllBytes(Path.Combine(badWeightsModel, "model.safetensors"), weights[..(weights.Length / 2)]);
    }

    /// <inheritdoc/>
    public void Dispose() => Directory.Delete(folder, recursive: true);

    private static RetNetConfig ModelTestSupportConfig() =>
        Tests.Model.ModelTestSupport.Micro(heads: 1, layers: 1) with { VocabSize = 256 };

    private string Write(string name, string text)
    {
        var path = Path.Combine(folder, name);
        File.WriteAllText(path, text);
        return path;
    }

    /// <summary>Runs retnet in-process, capturing the console; exceptions escape (the default handler is off).</summary>
    private static (int Code, string Output, string Error) Invoke(string[] args)
    {
        var (stdout, stderr) = (Console.Out, Console.Error);
        var output = new StringWriter();
        var error = new StringWriter();
        Console.SetOut(output);
        Console.SetError(error);
        try
        {
            var code = RetNetCommandLine.Create().Parse(args).Invoke(new InvocationConfiguration
            {
                EnableDefaultExceptionHandler = false, Output = output, Error = error,
            });
            return (code, output.ToString(), error.ToString());
        }
        finally
        {
            Console.SetOut(stdout);
            Console.SetError(stderr);
        }
    }

    private static Arbitrary<TokenText> TokenTexts =>
        Fuzz.Seeds.Generator.Select(seed =>
        {
            var random = new Random(seed);
            var lines = new List<string>();
            var width = random.Next(1, 6);
            var ragged = random.Next(4) == 0;
            for (var i = random.Next(0, 5); i > 0; i--)
            {
                var n = ragged ? random.Next(0, 7) : width;
                var items = Enumerable.Range(0, n).Select(_ => random.Next(3) == 0 ? TokenPieces[random.Next(TokenPieces.Length)] : random.Next(40).ToString());
                lines.Add(string.Join(random.Next(4) == 0 ? "\t " : " ", items));
            }
            var text = string.Join(random.Next(2) == 0 ? "\n" : "\r\n", lines) + (random.Next(2) == 0 ? "\n" : "");
            if (random.Next(8) == 0)
                text = "\uFEFF" + text;
            return new TokenText(ragged ? "ragged lines" : $"{lines.Count} lines of {width}", text);
        }).ToArbitrary();

    [Fact]
    public void Token_files_read_as_rectangular_id_rows_or_throw_an_argument_error() =>
        Fuzz.Check(Prop.ForAll(TokenTexts, text =>
        {
            var path = Path.Combine(folder, $"{Guid.NewGuid():N}.txt");
            File.WriteAllText(path, text.Text, new UTF8Encoding(false));
            try
            {
                Fuzz.ReturnsValidOrThrowsTyped(() => ModelCommands.ReadTokens(path), ids =>
                {
                    Assert.True(ids.GetLength(0) >= 1 && ids.GetLength(1) >= 1);
                }, e => e is ArgumentException);
                return true;
            }
            finally
            {
                File.Delete(path);
            }
        }), ciCases: 100);

    private Arbitrary<(Arguments Args, TokenText Tokens)> Vectors =>
        (from seed in Fuzz.Seeds.Generator
         from tokenText in TokenTexts.Generator
         select (Build(new Random(seed)), tokenText)).ToArbitrary();

    private const string OutputMarker = "<output>";
    private const string BadTokensMarker = "<bad-tokens>";

    private Arguments Build(Random random)
    {
        string Pick(params string[] values) => values[random.Next(values.Length)];
        var missing = Path.Combine(folder, "missing", "nothing");
        var badModels = new[] { missing, config, badConfigModel, badWeightsModel, folder, "" };
        var numbers = new[] { "1", "2", "0", "-1", "3", "2147483647", "-2147483648", "2147483648", "x", "1.5", "" };
        var command = random.Next(20) == 0
            ? Pick("bogus", "--bogus", "--help")
            : Pick("init", "forward", "forward", "gradients", "gradients", "generate", "generate", "eval", "eval");
        // Each option: its valid values, then its bad ones. A vector starts valid and gets up to two mutations.
        (string Name, string[] Valid, string[] Bad)[] options = command switch
        {
            "init" =>
            [
                ("--config", [config], [badConfig, missing, folder, tokens]), ("--output", [OutputMarker], [folder]),
                ("--seed", ["1"], numbers), ("--arch", ["retnet"], ["transformer", "gpt", "RETNET"]),
            ],
            "forward" =>
            [
                ("--model", [model], badModels), ("--tokens", [tokens], [BadTokensMarker, BadTokensMarker, missing, folder, config]),
                ("--mode", ["parallel", "chunkwise", "recurrent"], ["bogus", ""]), ("--chunk-size", ["1", "2"], numbers),
                ("--output", [OutputMarker], [folder, model]),
            ],
            "gradients" =>
            [
                ("--model", [model], badModels), ("--tokens", [tokens], [BadTokensMarker, BadTokensMarker, missing, folder]),
                ("--form", ["chunkwise", "parallel"], ["recurrent"]), ("--chunk-size", ["1", "2"], numbers),
                ("--output", [OutputMarker], [folder, model]),
            ],
            "generate" =>
            [
                ("--model", [model], badModels), ("--prompt", ["ab", "日本"], ["", "\u0000"]), ("--max-tokens", ["2"], ["0", "-1", "x"]),
                ("--temperature", ["0", "1"], ["-1", "NaN", "1e308", "x"]), ("--top-k", ["0", "5"], ["-1", "1000"]),
                ("--top-p", ["1", "0.5"], ["0", "1.5", "NaN"]), ("--seed", ["1"], numbers), ("--tokenizer", ["byte"], ["gpt2", "auto", "bogus"]),
            ],
            "eval" =>
            [
                ("--model", [model], badModels), ("--data", [data], [tokens, missing, config, ",", data + "," + missing, BadTokensMarker]),
                ("--seq-len", ["4"], ["1", "0", "-1", "100000", "x"]), ("--batch", ["1", "2"], ["0", "-1", "100000"]),
                ("--tokenizer", ["byte"], ["gpt2", "bogus"]),
            ],
            _ => [],
        };
        var mutated = new HashSet<int>();
        for (var i = random.Next(0, 3); i > 0 && options.Length > 0; i--)
            mutated.Add(random.Next(options.Length));
        var args = new List<string> { command };
        for (var i = 0; i < options.Length; i++)
        {
            var (name, valid, bad) = options[i];
            if (!mutated.Contains(i))
            {
                args.AddRange([name, valid[random.Next(valid.Length)]]);
                continue;
            }
            var roll = random.Next(10);
            if (roll == 0)
                continue;
            args.Add(name);
            if (roll != 1)
                args.Add(bad[random.Next(bad.Length)]);
        }
        if (command is "forward" or "gradients" or "generate" or "eval")
            args.AddRange(["--device", random.Next(8) == 0 ? "bogus" : "cpu"]);
        if (random.Next(20) == 0)
            args.Insert(random.Next(1, args.Count + 1), Pick("--bogus", "stray", "--", "-x"));
        if (command == "init" && !args.Contains("--device"))
            args.AddRange(["--device", "cpu"]);
        return new Arguments([.. args]);
    }

    /// <summary>
    /// The draw that broke the law: eval on an empty text file, whose InvalidDataException (no IOException) escaped
    /// CommonOptions.Run as an unhandled exception with a stack trace.
    /// </summary>
    [Fact]
    public void Retnet_exits_1_with_one_error_line_for_eval_on_an_empty_text_file()
    {
        var empty = Write("empty.txt", "");
        var (code, _, error) = Invoke(["eval", "--model", model, "--data", empty, "--seq-len", "4", "--tokenizer", "byte", "--device", "cpu"]);
        Assert.Equal(1, code);
        Assert.StartsWith("error: Text file", error, StringComparison.Ordinal);
        Assert.Single(error.Trim().Split('\n'));
    }

    [Fact]
    public void Retnet_exits_0_or_1_with_one_error_line_and_no_partial_output_for_any_argument_vector() =>
        Fuzz.Check(Prop.ForAll(Vectors, vector =>
        {
            var run = Directory.CreateDirectory(Path.Combine(folder, "runs", Guid.NewGuid().ToString("N"))).FullName;
            try
            {
                var output = Path.Combine(run, "out", "result.safetensors");
                var badTokens = Path.Combine(run, "bad-tokens.txt");
                File.WriteAllText(badTokens, vector.Tokens.Text);
                var args = vector.Args.Values.Select(v => v == OutputMarker ? output : v == BadTokensMarker ? badTokens : v).ToArray();
                var (code, _, error) = Invoke(args);
                Assert.True(code is 0 or 1, $"exit code {code}");
                var errorLines = error.Split('\n').Count(l => l.StartsWith("error:", StringComparison.Ordinal));
                Assert.True(errorLines <= 1, $"{errorLines} error lines:\n{error}");
                Assert.DoesNotContain("Unhandled", error, StringComparison.Ordinal);
                if (code != 0)
                {
                    Assert.False(string.IsNullOrWhiteSpace(error), "a failure with nothing on stderr");
                    Assert.False(File.Exists(output) || Directory.Exists(output), $"a failure left {output}");
                }
                Assert.Empty(Directory.GetFiles(folder, "*.tmp", SearchOption.AllDirectories));
                return true;
            }
            finally
            {
                Directory.Delete(run, recursive: true);
            }
        }), ciCases: 60);
}

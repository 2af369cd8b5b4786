using System.Text;
using RetNet.Ilgpu.DemoData;
using RetNet.Ilgpu.Tokenizers;
using RetNet.Ilgpu.Training.Data;

namespace RetNet.Ilgpu.Tests.DemoData;

public sealed class SdkCorpusTests : IDisposable
{
    private readonly string folder = Directory.CreateTempSubdirectory("retnet-corpus-").FullName;

    public void Dispose() => Directory.Delete(folder, recursive: true);

    private string PathOf(string name) => Path.Combine(folder, name);

    private const string Sample = """
        <?xml version="1.0" encoding="utf-8"?>
        <doc>
          <assembly><name>Sample</name></assembly>
          <members>
            <member name="T:Sample.Widget">
              <summary>Represents a   widget that wraps a <see cref="T:System.Collections.Generic.List`1" />
              of <see cref="M:Sample.Widget.#ctor(System.Int32)" /> values.</summary>
              <remarks>
                <para>The first paragraph says <paramref name="count" /> is <see langword="null" />.</para>
                <code>var w = new Widget();</code>
                <para>Use <c>Widget.Spin</c> or <see cref="M:Sample.Widget.Spin">the spin method</see> here.</para>
              </remarks>
            </member>
            <member name="M:Sample.Widget.Spin">
              <summary>Spins the widget. Represents a widget that is new.</summary>
              <param name="count">Represents a widget that wraps a List of Widget values.</param>
              <exception cref="T:System.ArgumentException">Never included in the corpus text.</exception>
              <returns>The number of turns made, or T:System.IO.IOException on <see langword="M:Sample.Fail" />.</returns>
              <param name="x">Too short.</param>
              <param name="y">__m128d _mm_cmpord_sd (__m128d a, __m128d b)</param>
              <param name="z">A64: ADDP Vd.2S, Vn.2S, Vm.2S</param>
              <param name="w">int8_t vmaxvq_s8 in words, that ends a sentence.</param>
            </member>
          </members>
        </doc>
        """;

    [Fact]
    public void Documentation_becomes_readable_deduplicated_paragraphs()
    {
        File.WriteAllText(PathOf("Sample.xml"), Sample);

        var paragraphs = SdkCorpus.Paragraphs(folder).ToList();

        Assert.Equal(
        [
            "Represents a widget that wraps a List of Widget values.",
            "The first paragraph says count is null.",
            "Use Widget.Spin or the spin method here.",
            "Spins the widget. Represents a widget that is new.",
            // The param repeats the first summary sentence and is dropped; "Too short." has two words; the
            // intrinsic signatures do not start with a letter, do not end a sentence, or name a C type.
            "The number of turns made, or IOException on Fail.",
        ], paragraphs);
    }

    [Theory]
    [InlineData("T:System.Collections.BitArray", "BitArray")]
    [InlineData("M:System.Collections.BitArray.#ctor(System.Boolean[])", "BitArray")]
    [InlineData("T:System.Collections.Generic.List`1", "List")]
    [InlineData("M:System.Linq.Enumerable.Select``2(System.Collections.Generic.IEnumerable{``0},System.Func{``0,``1})", "Select")]
    [InlineData("M:System.Collections.Generic.List`1.System#Collections#IList#Add(System.Object)", "Add")]
    [InlineData("P:System.String.Length", "Length")]
    public void References_read_as_their_last_name(string cref, string expected) =>
        Assert.Equal(expected, SdkCorpus.ReadableName(cref));

    [Fact]
    public void The_sdk_running_the_tests_has_a_reference_pack_with_documentation()
    {
        var found = SdkCorpus.Find();

        Assert.Contains("Microsoft.NETCore.App.Ref", found);
        Assert.Contains(Directory.GetFiles(found, "*.xml"), f => Path.GetFileName(f) == "System.Runtime.xml");
    }

    [Fact]
    public void Extracted_text_is_deterministic_plain_prose_within_the_budget()
    {
        const int budget = 300_000;
        var text = SdkCorpus.ExtractText(budget);
        var again = SdkCorpus.ExtractText(budget);
        var shorter = SdkCorpus.ExtractText(budget / 3);

        Assert.Equal(text, again);
        Assert.StartsWith(shorter, text);
        Assert.InRange(Encoding.UTF8.GetByteCount(text), budget - 2_000, budget);
        var lines = text.Split('\n')[..^1];
        Assert.Equal(lines.Length, lines.Distinct().Count());
        Assert.All(lines, line =>
        {
            Assert.Equal(line.Trim(), line);
            Assert.DoesNotContain("  ", line);
            Assert.DoesNotContain("<see", line);
            Assert.DoesNotContain("cref=", line);
            Assert.DoesNotContain("T:System.", line);
        });
        // English prose: mostly letters and spaces, and the commonest words are the commonest English words.
        Assert.True(text.Count(c => char.IsAsciiLetter(c) || c == ' ') > 0.9 * text.Length);
        var words = text.Split([' ', '\n'], StringSplitOptions.RemoveEmptyEntries);
        var top = words.GroupBy(w => w).OrderByDescending(g => g.Count()).Take(10).Select(g => g.Key).ToList();
        Assert.Contains("the", top);
        Assert.Contains("to", top);
    }

    [Fact]
    public void The_split_holds_out_every_tenth_paragraph_and_shares_none()
    {
        var train = PathOf("train.txt");
        var validation = PathOf("validation.txt");

        var split = SdkCorpus.Write(train, validation, 200_000, 20_000);

        var trainLines = File.ReadAllLines(train);
        var validationLines = File.ReadAllLines(validation);
        Assert.Equal(split.TrainParagraphs, trainLines.Length);
        Assert.Equal(split.ValidationParagraphs, validationLines.Length);
        Assert.Equal(split.TrainBytes, new FileInfo(train).Length);
        Assert.InRange(split.TrainBytes, 190_000, 200_000);
        Assert.InRange(split.ValidationBytes, 18_000, 20_000);
        Assert.Empty(trainLines.Intersect(validationLines));
        var paragraphs = SdkCorpus.Paragraphs().Take(trainLines.Length + validationLines.Length).ToList();
        Assert.Equal(paragraphs[9], validationLines[0]);
        Assert.Equal(paragraphs[19], validationLines[1]);
        Assert.Equal(paragraphs[..9], trainLines[..9]);

        // The files open as a text dataset, and bytes per token is GPT-2's usual ~4 for English.
        using var data = TokenDataset.Open([train], Gpt2Tokenizer.Instance, 50257);
        Assert.Equal(split.TrainBytes, data.TextBytes);
        Assert.InRange((double)data.TextBytes / data.Count, 3.5, 6.5);
    }

    [Fact]
    public void A_folder_without_documentation_is_an_error_naming_it()
    {
        var error = Assert.Throws<DirectoryNotFoundException>(() => SdkCorpus.Paragraphs(folder).ToList());
        Assert.Contains(folder, error.Message);
    }
}
